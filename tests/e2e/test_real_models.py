"""End to end with the prepared real models (`make models`), served by the default config over loopback HTTP."""

from __future__ import annotations

import json

import httpx
import pytest
from support.serve import REPO, deployed

from serve_app.builders import bbc
from serve_app.config import load_config
from serve_app.config.settings import GatewaySettings

MODELS = REPO / "models"


@pytest.fixture(scope="module")
def real_gateway(serve_session):
    if not (MODELS / "classifier" / "training.json").is_file() or not (REPO / "registry" / "summarizer").is_dir():
        pytest.skip("real models are not prepared and registered; run `make models` (make test does)")
    config = load_config(REPO / "configs" / "gateway.yaml", GatewaySettings(models_dir=MODELS, num_gpus=0))
    with deployed(config), httpx.Client(base_url=serve_session, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def held_out_by_topic():
    _, held_out = bbc.split(bbc.load_articles())
    firsts = {}
    for a in held_out:
        firsts.setdefault(a.label, a)
    return list(firsts.values())


def test_stored_training_report_meets_the_accuracy_bar():
    report = json.loads((MODELS / "classifier" / "training.json").read_text())
    assert report["held_out_accuracy"] >= 0.95
    assert report["split"]["rule"] == bbc.SPLIT_RULE
    _, held_out = bbc.split(bbc.load_articles())
    assert report["split"]["held_out_ids"] == [a.id for a in held_out]


def test_held_out_articles_get_their_topic(real_gateway, held_out_by_topic):
    assert len(held_out_by_topic) == 5
    r = real_gateway.post("/v1/classify", json={"texts": [a.text for a in held_out_by_topic]})
    assert r.status_code == 200, r.text
    got = [x["label"] for x in r.json()["results"]]
    assert got == [a.label for a in held_out_by_topic]
    assert r.json()["max_length"] == 256
    # The default config serves the registry's `stable` version, and every answer names it.
    listing = real_gateway.get("/v1/models/classifier").json()
    assert r.headers["x-model-version"] == r.json()["version"] == listing["versions"][0]["version"]
    assert r.json()["version"].isdigit()


def test_a_latency_budget_selects_among_the_classifier_and_the_int8_variant_make_models_built(
        real_gateway, held_out_by_topic):
    variants = {v["version"]: v for v in real_gateway.get("/v1/models/classifier").json()["selection"]["variants"]}
    assert len(variants) == 2 and all(v["gated"] and v["accuracy"] >= 95 for v in variants.values())
    texts = [a.text for a in held_out_by_topic]
    r = real_gateway.post("/v1/classify", json={"texts": texts}, headers={"X-Latency-Budget-Ms": "60000"})
    assert r.status_code == 200, r.text
    chosen = r.json()["selection"]
    # Both fit a minute: the more accurate one answers, and says so in the header too.
    assert variants[chosen["variant"]]["accuracy"] == max(v["accuracy"] for v in variants.values())
    assert chosen["budget_met"] is True and r.headers["x-model-version"] == chosen["variant"]
    assert r.headers["x-variant-selection"].startswith(f"variant={chosen['variant']}; reason=")
    assert [x["label"] for x in r.json()["results"]] == [a.label for a in held_out_by_topic]
    too_high = real_gateway.post("/v1/classify", json={"texts": texts[:1], "min_accuracy": 99.99})
    assert too_high.status_code == 400 and too_high.json()["field"] == "min_accuracy"


def test_summary_is_shorter_than_the_article_and_deterministic(real_gateway, held_out_by_topic):
    article = held_out_by_topic[0].text
    payload = {"texts": [article], "max_new_tokens": 48}
    first = real_gateway.post("/v1/summarize", json=payload)
    assert first.status_code == 200, first.text
    summary = first.json()["results"][0]["summary"]
    assert summary.strip() and len(summary) < len(article)
    again = real_gateway.post("/v1/summarize", json=payload).json()["results"][0]["summary"]
    assert again == summary


def test_summarize_then_classify_gives_a_summary_and_the_topic(real_gateway, held_out_by_topic):
    r = real_gateway.post("/v1/pipelines/summarize_then_classify",
                          json={"texts": [a.text for a in held_out_by_topic], "trace": True})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    for article, result in zip(held_out_by_topic, results):
        assert result["summary"].strip() and len(result["summary"]) < len(article.text)
    got = [x["label"] for x in results]
    assert got == [a.label for a in held_out_by_topic], got
    assert {e.get("model") for e in r.json()["trace"]} >= {"summarizer", "classifier"}


def test_classify_ensemble_and_long_document_summary(real_gateway, held_out_by_topic):
    r = real_gateway.post("/v1/pipelines/classify_ensemble", json={"texts": [a.text for a in held_out_by_topic]})
    assert r.status_code == 200, r.text
    assert [x["label"] for x in r.json()["results"]] == [a.label for a in held_out_by_topic]
    assert all(set(x["branches"]) == {"full", "lead"} for x in r.json()["results"])
    long_text = " ".join(a.text for a in held_out_by_topic[:2])
    r = real_gateway.post("/v1/pipelines/long_document_summary", json={"texts": [long_text]})
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert result["windows"] >= 2 and result["summary"].strip()
    assert len(result["summary"]) < len(long_text) and len(result["partial_summary"]) < len(long_text)


def test_summarize_business_summarizes_only_what_the_classifier_calls_business(real_gateway, held_out_by_topic):
    r = real_gateway.post("/v1/pipelines/summarize_business", json={"texts": [a.text for a in held_out_by_topic]})
    assert r.status_code == 200, r.text
    for article, result in zip(held_out_by_topic, r.json()["results"], strict=True):
        assert result["label"] == article.label
        if article.label == "business":
            assert result["branch"] == "business" and result["summary"].strip()
        else:
            assert result["branch"] is None and "summary" not in result


def test_stock_triton_clients_classify_and_summarize_with_the_real_models(real_gateway, grpc_target,
                                                                          held_out_by_topic):
    import numpy as np
    import tritonclient.grpc as tgrpc
    import tritonclient.http as thttp

    texts = np.array([a.text.encode() for a in held_out_by_topic], dtype=np.object_)
    http_client = thttp.InferenceServerClient(str(real_gateway.base_url).removeprefix("http://").rstrip("/"),
                                              network_timeout=300)
    inp = thttp.InferInput("text", [len(texts)], "BYTES")
    inp.set_data_from_numpy(texts)
    labels = [x.decode() for x in http_client.infer("classifier", [inp]).as_numpy("label")]
    assert labels == [a.label for a in held_out_by_topic]

    grpc_client = tgrpc.InferenceServerClient(grpc_target)
    ginp = tgrpc.InferInput("text", [1], "BYTES")
    ginp.set_data_from_numpy(texts[:1])
    assert grpc_client.infer("classifier", [ginp]).as_numpy("label")[0].decode() == held_out_by_topic[0].label
    summary = grpc_client.infer("summarizer", [ginp], parameters={"max_new_tokens": 24}).as_numpy("summary")[0]
    assert 0 < len(summary.decode().strip()) < len(held_out_by_topic[0].text)


def test_real_smollm2_streams_the_same_summary_and_speaks_openai(real_gateway, held_out_by_topic):
    import openai

    article = held_out_by_topic[1].text
    whole = real_gateway.post("/v1/summarize", json={"texts": [article], "max_new_tokens": 40}).json()
    with real_gateway.stream("POST", "/v1/summarize", json={"texts": [article], "max_new_tokens": 40,
                                                            "stream": True}) as r:
        data = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert "".join(d["text"] for d in data[:-1]) == data[-1]["summary"] == whole["results"][0]["summary"]
    words = set(article.lower().split())
    assert sum(w in words for w in data[-1]["summary"].lower().split()) >= 3  # it is about the article
    base_url = str(real_gateway.base_url).rstrip("/") + "/openai/v1"
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    question = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    reply = client.chat.completions.create(model="summarizer", messages=question, max_tokens=8, temperature=0)
    assert "paris" in reply.choices[0].message.content.lower()
    streamed = client.chat.completions.create(model="summarizer", messages=question, max_tokens=8, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == reply.choices[0].message.content
