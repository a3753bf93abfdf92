"""A real Ray Serve instance on loopback HTTP, serving tiny random-weight models with the real tokenizers."""

from __future__ import annotations

import concurrent.futures

import pytest
from support.serve import gateway_fixture
from support.tiny_models import TINY_LABELS

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings


def gateway_config(tiny_models):
    return parse_config({
        "server": {"limits": {"max_texts": 8, "max_text_chars": 5000}},
        "models": [
            {"name": "tiny-clf", "task": "classification", "source": "tiny-classifier", "max_length": 32,
             "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.05},
             "resources": {"num_cpus": 0.1, "num_gpus": 0}},
            {"name": "tiny-sum", "task": "summarization", "source": "tiny-summarizer", "max_length": 64,
             "resources": {"num_cpus": 0.1, "num_gpus": 0},
             "generation": {"max_new_tokens": 4, "max_new_tokens_limit": 8}},
        ],
    }, settings=GatewaySettings(models_dir=tiny_models))


gateway = gateway_fixture(gateway_config)


def test_models_are_listed_ready_with_content_hash_versions(gateway):
    models = {m["name"]: m for m in gateway.get("/v1/models").json()["models"]}
    assert set(models) == {"tiny-clf", "tiny-sum"}
    assert all(m["ready"] for m in models.values())
    [clf] = models["tiny-clf"]["versions"]
    assert clf["labels"] == TINY_LABELS and clf["traffic_share"] == 1.0
    assert clf["content_hash"].startswith("sha256:")
    assert clf["version"] == "sha256:" + clf["content_hash"][7:19]
    assert gateway.get("/readyz").status_code == 200 and gateway.get("/healthz").status_code == 200


def test_classify_batch_over_http(gateway):
    r = gateway.post("/v1/classify", json={"texts": ["first text", "word " * 100]})
    assert r.status_code == 200, r.text
    body = r.json()
    version = gateway.get("/v1/models/tiny-clf").json()["versions"][0]["version"]
    assert r.headers["x-model-version"] == version == body["version"]
    assert body["model"] == "tiny-clf" and body["max_length"] == 32
    assert [x["truncated"] for x in body["results"]] == [False, True]
    assert all(x["label"] in TINY_LABELS for x in body["results"])


def test_summarize_over_http_is_bounded_and_deterministic(gateway):
    payload = {"texts": ["Shares rose sharply in London on Monday."], "max_new_tokens": 5}
    first = gateway.post("/v1/summarize", json=payload)
    assert first.status_code == 200, first.text
    result = first.json()["results"][0]
    assert result["generated_tokens"] <= 5 and first.json()["max_new_tokens"] == 5
    assert gateway.post("/v1/summarize", json=payload).json()["results"] == first.json()["results"]


def test_concurrent_requests_are_batched_and_each_gets_its_own_answers(gateway):
    texts = [f"text number {i}" for i in range(24)]
    alone = {t: gateway.post("/v1/classify", json={"texts": [t]}).json()["results"][0] for t in texts[:3]}

    def one(i):
        return gateway.post("/v1/classify", json={"texts": [texts[i], texts[(i + 1) % 24]]})

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(one, range(24)))
    assert all(r.status_code == 200 for r in responses)
    for i, r in enumerate(responses):
        results = r.json()["results"]
        assert len(results) == 2
        if texts[i] in alone:  # batched with strangers, a text still gets the answer it gets alone
            assert results[0]["probabilities"] == pytest.approx(alone[texts[i]]["probabilities"], abs=1e-4)


@pytest.mark.parametrize("path, body, status, fragment", [
    ("/v1/classify", b"{oops", 400, "not valid JSON"),
    ("/v1/classify", b'{"texts": [1]}', 400, "texts.0"),
    ("/v1/classify", b'{"texts": []}', 400, "texts"),
    ("/v1/classify", b'{"texts": [""]}', 400, "text is empty"),
    ("/v1/classify", b'{"texts": ' + str(["a"] * 9).replace("'", '"').encode() + b"}", 400, "limit is 8"),
    ("/v1/classify", b'{"texts": ["a"], "model": "ghost"}', 404, "ghost"),
    ("/v1/summarize", b'{"texts": ["a"], "max_new_tokens": 9}', 400, "between 1 and 8"),
    ("/v1/summarize", b'{"texts": ["a"], "max_new_tokens": -1}', 400, "between 1 and 8"),
    ("/v1/classify", b'{"texts": ["' + b"a" * 6000 + b'"]}', 400, "characters"),
])
def test_bad_input_over_http_is_a_4xx_json_error(gateway, path, body, status, fragment):
    r = gateway.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]


def test_oversized_body_is_413_before_reaching_a_model(gateway):
    r = gateway.post("/v1/classify", content=b"x" * (9 * 1024 * 1024), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["error"]
