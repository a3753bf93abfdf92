"""The registry against a real S3-compatible server (moto) on loopback: register, pull, verify, load."""

from __future__ import annotations

import concurrent.futures

import boto3
import pytest
from support.s3_server import CREDENTIALS, make_bucket, moto_s3_server
from support.tiny_models import TINY_LABELS

from serve_app.registry import IntegrityError, Registry
from serve_app.runtime.classifier import TextClassifier


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_s3_server() as endpoint:
        make_bucket(endpoint, "models")
        yield endpoint


def s3_registry(endpoint, cache_dir) -> Registry:
    return Registry("s3://models/registry", {"endpoint_url": endpoint, **CREDENTIALS}, cache_dir=cache_dir)


def test_register_pull_and_load_from_s3(s3_endpoint, tiny_models, tmp_path):
    reg = s3_registry(s3_endpoint, tmp_path / "cache")
    v = reg.register("tiny-clf", tiny_models / "tiny-classifier", tags={"origin": "test"})
    reg.set_alias("tiny-clf", "stable", "1")
    # A second client (another replica, another machine) sees the same version through S3 alone.
    other = s3_registry(s3_endpoint, tmp_path / "cache2")
    assert other.resolve("tiny-clf@stable") == v
    path = other.pull("tiny-clf@stable")
    clf = TextClassifier(path, max_length=32)
    assert clf.predict(["hello from s3"])[0]["label"] in TINY_LABELS
    fetched = []
    assert other.pull("tiny-clf@1", on_progress=lambda p, n: fetched.append(p)) == path
    assert fetched == [], "a cached version is not downloaded again"


def test_concurrent_s3_registrations_get_distinct_iterations(s3_endpoint, tiny_models, tmp_path):
    reg = s3_registry(s3_endpoint, tmp_path / "cache")

    def register(_):
        return s3_registry(s3_endpoint, tmp_path / "c").register("race", tiny_models / "tiny-classifier").iteration

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        iterations = sorted(pool.map(register, range(3)))
    assert iterations == [1, 2, 3]
    assert [v.iteration for v in reg.versions("race")] == [1, 2, 3]


def test_an_object_altered_in_s3_is_refused_at_pull(s3_endpoint, tiny_models, tmp_path):
    reg = s3_registry(s3_endpoint, tmp_path / "cache")
    v = reg.register("tamper", tiny_models / "tiny-classifier")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    s3.put_object(Bucket="models", Key=f"registry/tamper/versions/{v.iteration}/files/config.json", Body=b"{}")
    with pytest.raises(IntegrityError, match="refusing to load"):
        reg.pull("tamper@1")
    assert not reg.cached_path(v).exists()


def test_gateway_serves_a_version_pulled_from_s3(s3_endpoint, serve_session, tiny_models, tmp_path):
    import httpx
    from support.serve import deployed

    from serve_app.config import parse_config
    from serve_app.config.settings import GatewaySettings

    reg = s3_registry(s3_endpoint, tmp_path / "seed-cache")
    version = reg.register("s3-clf", tiny_models / "tiny-classifier")
    config = parse_config({
        "registry": {"uri": "s3://models/registry", "endpoint_url": s3_endpoint, "region": CREDENTIALS["region"],
                     "key": CREDENTIALS["key"], "secret": CREDENTIALS["secret"],
                     "cache_dir": str(tmp_path / "replica-cache")},
        "models": [{"name": "s3-clf", "task": "classification", "version": "latest", "max_length": 32,
                    "resources": {"num_cpus": 0.1, "num_gpus": 0}}],
    }, settings=GatewaySettings(models_dir=tmp_path))
    with deployed(config), httpx.Client(base_url=serve_session, timeout=60) as client:
        r = client.post("/v1/classify", json={"texts": ["served from s3"]})
        assert r.status_code == 200, r.text
        assert r.json()["version"] == str(version.iteration) and r.json()["results"][0]["label"] in TINY_LABELS
    assert (tmp_path / "replica-cache" / version.content_hash.split(":")[1] / "config.json").is_file()
