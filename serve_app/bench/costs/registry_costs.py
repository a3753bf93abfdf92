"""Measure what a registry version costs to get ready, side by side in one run (medians of 3):

- cold pull of the classifier from a real S3-compatible server (moto on loopback) into an empty cache,
- cached load: the same pull when the cache already holds it (hash verification only),
- the same two from a local-folder store,
- hot load and unload of a classifier version in a running gateway (Ray Serve), through the admin API.

Run from the repository root after `make models`: .venv/bin/python -m serve_app.bench.costs.registry_costs
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from serve_app.bench.harness import REPO, deploy_gateway, free_port, local_ray
from serve_app.config.serve_env import use_fast_path
from serve_app.registry import Registry

CLASSIFIER = REPO / "models" / "classifier"


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def pull_costs(reg: Registry, cache: Path) -> tuple[float, float]:
    version = reg.resolve("classifier@1")
    cold, cached = [], []
    for _ in range(3):
        shutil.rmtree(cache, ignore_errors=True)
        cold.append(timed(lambda: reg.pull(version)))
        cached.append(timed(lambda: reg.pull(version)))
    return statistics.median(cold), statistics.median(cached)


@contextmanager
def s3_registry(work: Path) -> Iterator[Registry]:
    """A registry on moto's S3 server on loopback, started by the tests' own helper (tests/support/s3_server.py)."""
    sys.path.insert(0, str(REPO / "tests"))
    from support.s3_server import CREDENTIALS, make_bucket, moto_s3_server

    with moto_s3_server() as endpoint:
        make_bucket(endpoint, "models")
        yield Registry("s3://models/r", {"endpoint_url": endpoint, **CREDENTIALS}, cache_dir=work / "s3-cache")


def hot_load_unload(work: Path) -> tuple[float, float]:
    import httpx

    from serve_app.config import parse_config
    from serve_app.config.settings import GatewaySettings

    reg = Registry(str(work / "hot-store"), cache_dir=work / "hot-cache")
    reg.register("classifier", CLASSIFIER)
    reg.register("classifier", CLASSIFIER)  # same files, a second iteration to load and unload
    config = parse_config({"registry": {"uri": str(work / "hot-store"), "cache_dir": str(work / "hot-cache")},
                           "models": [{"name": "classifier", "task": "classification", "version": "1",
                                       "resources": {"num_cpus": 0.2, "num_gpus": 0}}]},
                          settings=GatewaySettings(models_dir=work))
    with local_ray(num_cpus=2):
        from ray import serve

        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        deploy_gateway(config)
        loads, unloads = [], []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as c:
            for _ in range(3):
                loads.append(timed(lambda: c.post("/v1/admin/models/classifier/versions/2/load").raise_for_status()))
                unloads.append(timed(
                    lambda: c.post("/v1/admin/models/classifier/versions/2/unload").raise_for_status()))
        return statistics.median(loads), statistics.median(unloads)


def main() -> None:
    if not (CLASSIFIER / "model.safetensors").is_file():
        raise SystemExit("run `make models` first")
    use_fast_path()
    size_mb = sum(p.stat().st_size for p in CLASSIFIER.rglob("*") if p.is_file()) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        local = Registry(str(work / "store"), cache_dir=work / "local-cache")
        local.register("classifier", CLASSIFIER)
        local_cold, local_cached = pull_costs(local, work / "local-cache")
        with s3_registry(work) as s3:
            s3.register("classifier", CLASSIFIER)
            s3_cold, s3_cached = pull_costs(s3, work / "s3-cache")
        load, unload = hot_load_unload(work)
    print(f"classifier: {size_mb:.1f} MB, medians of 3")
    print(f"  S3 (moto, loopback): cold pull {s3_cold:.2f} s, cached load {s3_cached:.2f} s "
          f"(cold/cached {s3_cold / s3_cached:.1f}x)")
    print(f"  local store:         cold pull {local_cold:.2f} s, cached load {local_cached:.2f} s "
          f"(cold/cached {local_cold / local_cached:.1f}x)")
    print(f"  hot load of a version in a running gateway: {load:.2f} s, unload {unload:.2f} s")


if __name__ == "__main__":
    main()
