"""`python -m serve_app.bench.multiplex` (part of `make bench`): T1, what multiplexing saves in memory.

Eight registry versions of the prepared classifier served two ways, one after the other on one local Ray:
multiplexed (one application, 2 replicas holding at most 4 versions each, Ray Serve's `@serve.multiplexed`) and
separate (8 applications of one replica each, the gateway's default). The versions are copies of the classifier's
files, each with a marker file of its own so every copy has its own content hash: eight registry versions whose
answers must all be the label the model gives in process. After versions 2-8 are loaded through the admin API
and every version answered 4 calls, the replica processes' resident memory (RSS, psutil) is summed.
T1 = multiplexed ÷ separate. Results: docs/bench/multiplex.json, merged by id into bench.json. ~5 minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

from serve_app.bench import report
from serve_app.bench.harness import (
    deploy_gateway,
    local_ray,
    open_gateway_registry,
    progress_ticker,
    start_proxies_on_free_ports,
)
from serve_app.bench.judge import LE, judge, ratio

VERSIONS = 8
ROUNDS = 4  # calls per version


def register_versions(clf_dir: Path, work: Path) -> None:
    from serve_app.registry import Registry

    registry = Registry(str(work / "store"), cache_dir=work / "cache")
    for n in range(1, VERSIONS + 1):
        copy = work / f"copy{n}"
        shutil.copytree(clf_dir, copy)
        (copy / "VARIANT.txt").write_text(f"copy {n} of the prepared classifier (T1 bench)\n")
        registry.register("clf", copy)


def config(work: Path, multiplexed: bool):
    from serve_app.config import parse_config
    from serve_app.config.settings import GatewaySettings

    model = {"name": "clf", "task": "classification", "version": "1", "max_length": 128,
             "resources": {"replicas": 2 if multiplexed else 1, "num_cpus": 0.2, "num_gpus": 0, "threads": 1},
             "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.0}}
    if multiplexed:
        model["multiplex"] = {"max_versions_per_replica": 4, "load_wait_s": 120}
    return parse_config({"registry": {"uri": str(work / "store"), "cache_dir": str(work / "cache")},
                         "models": [model]}, settings=GatewaySettings(models_dir=work))


def replica_memory(app_prefix: str) -> dict:
    """The alive Serve replica processes of applications named `app_prefix...` and their summed RSS (MB), from
    the GCS actor table (no dashboard needed)."""
    import psutil
    from ray._private import state

    pids = [a["Pid"] for a in state.actors(actor_state_name="ALIVE").values()
            if a["ActorClassName"].startswith(f"ServeReplica:{app_prefix}")]
    rss = [psutil.Process(pid).memory_info().rss / 2**20 for pid in pids]
    return {"replicas": len(pids), "rss_mb": round(sum(rss), 1), "per_replica_mb": [round(r, 1) for r in rss]}


def exercise(url: str, texts: list[str], expected: dict[str, str], tick) -> dict:
    """Load versions 2..8 through the admin API, then call every version in turn, `ROUNDS` times, each answer
    checked: the version pinned came back, with the label the model gives in process."""
    calls = failed = wrong = 0
    with httpx.Client(base_url=url, timeout=300) as http:
        for n in range(2, VERSIONS + 1):
            tick(f"loading version {n} of {VERSIONS}")
            r = http.post(f"/v1/admin/models/clf/versions/{n}/load")
            failed += r.status_code != 200
        for _ in range(ROUNDS):
            for n in range(1, VERSIONS + 1):
                text = texts[calls % len(texts)]
                calls += 1
                r = http.post("/v1/classify", json={"texts": [text], "model": f"clf@{n}"})
                if r.status_code != 200 or r.headers.get("x-model-version") != str(n):
                    failed += 1
                    continue
                wrong += r.json()["results"][0]["label"] != expected[text]
    return {"calls": calls, "failed": failed, "wrong": wrong}


def held(url: str) -> list[dict]:
    """Per version: what the replica Ray routes it to holds (multiplexed layout)."""
    with httpx.Client(base_url=url, timeout=60) as http:
        versions = http.get("/v1/models/clf").json()["versions"]
    return [{"version": v["version"], **v.get("multiplex", {})} for v in versions]


def layout(url: str, work: Path, multiplexed: bool, texts: list[str], expected: dict[str, str], tick) -> dict:
    from ray import serve

    tick(f"deploying the {'multiplexed' if multiplexed else 'separate'} layout")
    deploy_gateway(config(work, multiplexed))
    run = exercise(url, texts, expected, tick)
    time.sleep(2)  # evicted versions' batchers stop; memory settles
    run["memory"] = replica_memory("clf--mux" if multiplexed else "clf--v")
    if multiplexed:
        run["held"] = held(url)
    for name in serve.status().applications:
        serve.delete(name)
    return run


def t1_row(run: dict) -> dict:
    mux, separate = run["multiplexed"], run["separate"]
    problems = [f"{name}: {r['failed']} calls failed, {r['wrong']} answers wrong"
                for name, r in run.items() if r["failed"] or r["wrong"]]
    if (mux["memory"]["replicas"], separate["memory"]["replicas"]) != (2, VERSIONS):
        problems.append(f"replicas: {mux['memory']['replicas']} multiplexed, {separate['memory']['replicas']} separate")
    return judge("T1", f"resident memory of {VERSIONS} classifier versions: 2 multiplexed replicas holding at most 4 "
                 f"each ({mux['memory']['rss_mb']:g} MB) ÷ {VERSIONS} separate replicas "
                 f"({separate['memory']['rss_mb']:g} MB)",
                 [ratio(mux["memory"]["rss_mb"], separate["memory"]["rss_mb"])], LE, 0.5, problems)


def measure(tick) -> dict:
    from serve_app.builders import bbc
    from serve_app.runtime.classifier import load_classifier

    registry = open_gateway_registry(None)
    clf_dir = registry.pull(registry.resolve("classifier@stable"))
    _, held_out = bbc.split(bbc.load_articles())
    texts = [a.text for a in held_out][:64]
    tick("reference labels, the model in process")
    expected = {t: r["label"] for t, r in zip(texts, load_classifier(clf_dir, 128).predict(texts, 32), strict=True)}
    with tempfile.TemporaryDirectory(prefix="gateway-t1-") as tmp, local_ray(num_cpus=2):
        work = Path(tmp)
        register_versions(clf_dir, work)
        http_port, _ = start_proxies_on_free_ports(config(work, True))
        url = f"http://127.0.0.1:{http_port}"
        return {"versions": VERSIONS, "calls_per_version": ROUNDS,
                **{name: layout(url, work, name == "multiplexed", texts, expected, tick)
                   for name in ("multiplexed", "separate")}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve_app.bench.multiplex", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    args = parser.parse_args(argv)
    with progress_ticker("multiplex (T1)") as tick:
        run = measure(tick)
    row = t1_row({k: run[k] for k in ("multiplexed", "separate")})
    run["targets"] = [row]
    (args.out / "multiplex.json").write_text(json.dumps(run, indent=2) + "\n")
    report.merge_step(args.out, "multiplex", [row])
    print(f"T1: {row['value']} (target {row['target']}) {row['status']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
