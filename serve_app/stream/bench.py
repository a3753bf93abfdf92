"""`make stream-bench`: the stream job's targets, measured side by side in one run -> docs/bench/stream.json.

F1  records/s through the Flink job to the gateway / records/s of a direct async client (aiohttp, the same
    batch size and requests in flight) against the same gateway; the median of per-round ratios (>= 0.8).
    The job's rate is over its processing span (first record in -> last answer out, from the operator's
    summary), so the JVM's start-up, paid once per job and not per record, is left out - and reported.
F2  records lost (0): (a) Ray Serve stopped and started again mid-stream; (b) the job killed with SIGKILL
    mid-stream and restored from its last retained checkpoint. Duplicates in the committed output are counted.

Runs Ray in-process with the prepared BBC classifier (`make models`) on a free loopback port.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from serve_app.bench.harness import free_port, local_ray, start_gateway
from serve_app.bench.load import closed_loop
from serve_app.stream.batching import chunks
from serve_app.stream.cli import REPO, flink_python, job_command, job_env
from serve_app.stream.outputs import Tally

BATCH = 16


def gateway_config():
    from serve_app.config import parse_config
    from serve_app.config.settings import GatewaySettings

    return parse_config({"server": {"grpc_port": 0, "limits": {"max_texts": 64}}, "models": [
        {"name": "classifier", "task": "classification", "source": "classifier", "max_length": 128,
         "batching": {"max_batch_size": BATCH, "batch_wait_timeout_s": 0.01},
         "resources": {"num_cpus": 0.5, "num_gpus": 0, "threads": 1}}]},
        settings=GatewaySettings(models_dir=REPO / "models"))


async def direct_rate(base: str, texts: list[str], max_requests: int) -> float:
    """records/s of a plain async client (aiohttp): batches of BATCH texts, `max_requests` calls in flight, driven
    by the bench's closed loop (bench/load.py) over every batch once; any failed call fails the measurement."""
    batches = list(chunks(texts, BATCH))
    async with aiohttp.ClientSession() as session:
        async def one(n: int) -> None:
            async with session.post(f"{base}/v1/classify", json={"texts": batches[n]}) as r:
                if r.status != 200:
                    raise RuntimeError(f"direct client got {r.status}: {await r.text()}")
                await r.read()

        sample = await closed_loop(one, max_requests, max_requests=len(batches))
    if sample.errors:
        raise RuntimeError(f"{sample.errors} direct calls failed, first: {sample.first_error}")
    return len(texts) / sample.seconds


def write_source(path: Path, articles) -> set[str]:
    path.write_text("".join(json.dumps({"id": a.id, "text": a.text}) + "\n" for a in articles))
    return {a.id for a in articles}


def start_job(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(job_command(args), env=job_env(flink_python()), stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)


def job_rate(base: str, source: Path, out: Path, max_requests: int) -> dict:
    started = time.monotonic()
    job = start_job(["--source", str(source), "--out", str(out), "--gateway", base,
                     "--max-requests", str(max_requests)], out.with_suffix(".log"))
    if job.wait(900) != 0:
        raise RuntimeError(out.with_suffix(".log").read_text()[-3000:])
    wall = time.monotonic() - started
    [summary] = [json.loads(p.read_text()) for p in (out / "metrics").glob("enrich-*.json")]
    span = summary["last_out_unix"] - summary["first_in_unix"]
    return {"records_per_s": summary["records_out"] / span, "span_s": round(span, 2), "job_wall_s": round(wall, 1),
            "records_out": summary["records_out"], "requests": summary["requests"]}


def restart_serve(base: str, config) -> None:
    from ray import serve

    serve.shutdown()
    start_gateway(config, int(base.rsplit(":", 1)[1]), 0)


def f2_restart(base: str, config, articles, work: Path) -> dict:
    expected = write_source(work / "restart.jsonl", articles)
    out = work / "restart-out"
    job = start_job(["--source", str(work / "restart.jsonl"), "--out", str(out), "--gateway", base,
                     "--checkpoint-interval", "1"], work / "restart.log")
    wait_for(lambda: len(Tally.of(out).results) > 0, job, 300)
    before = len(Tally.of(out).results)
    restart_serve(base, config)
    if job.wait(900) != 0:
        raise RuntimeError((work / "restart.log").read_text()[-3000:])
    tally = Tally.of(out)
    return {"records": len(expected), "committed_before_restart": before, "mid_stream": before < len(expected),
            "lost": len(tally.lost(expected)),
            "duplicates": tally.duplicates(), "dead_letters": len(tally.dead_letters)}


def latest_checkpoint(folder: Path) -> Path | None:
    done = [p.parent for p in folder.glob("*/chk-*/_metadata")]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


def f2_kill(base: str, articles, work: Path) -> dict:
    inbox, out = work / "inbox", work / "kill-out"
    inbox.mkdir()
    expected = write_source(inbox / "a.jsonl", articles)
    args = ["--source", str(inbox), "--watch", "0.5", "--out", str(out), "--gateway", base,
            "--checkpoint-interval", "1", "--max-requests", "1"]
    first = start_job(args, work / "kill-first.log")
    wait_for(lambda: len(Tally.of(out).results) >= len(expected) // 5 and latest_checkpoint(out / "checkpoints"),
             first, 300)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(60)
    before = len(Tally.of(out).results)
    checkpoint = latest_checkpoint(out / "checkpoints")
    second = start_job([*args, "--restore", str(checkpoint)], work / "kill-second.log")
    try:
        wait_for(lambda: len(Tally.of(out).keys()) >= len(expected), second, 600)
    finally:
        os.killpg(second.pid, signal.SIGKILL)
        second.wait(60)
    tally = Tally.of(out)
    return {"records": len(expected), "committed_before_kill": before, "mid_stream": before < len(expected),
            "restored_from": checkpoint.name,
            "lost": len(tally.lost(expected)), "duplicates": tally.duplicates(),
            "dead_letters": len(tally.dead_letters)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-requests", type=int, default=4, help="gateway calls in flight (both clients)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bench" / "stream.json")
    args = parser.parse_args(argv)
    if not (REPO / "models" / "classifier" / "config.json").is_file():
        parser.error("the prepared classifier is missing: run `make models`")
    if not flink_python().is_file():
        parser.error("no Flink venv: run `make flink-venv`")
    return args


def f1_rounds(base: str, articles, work: Path, rounds: int, max_requests: int) -> list[dict]:
    """F1, `rounds` times: the direct client, then the job, over the same articles."""
    texts = [a.text for a in articles]
    source = work / "articles.jsonl"
    write_source(source, articles)
    out = []
    for i in range(rounds):
        direct = asyncio.run(direct_rate(base, texts, max_requests))
        job = job_rate(base, source, work / f"round-{i}", max_requests)
        out.append({"direct_records_per_s": round(direct, 1), **job, "ratio": round(job["records_per_s"] / direct, 3)})
        job["records_per_s"] = round(job["records_per_s"], 1)
        print(f"[F1 round {i + 1}/{rounds}] direct {direct:.1f} rec/s, job "
              f"{out[-1]['records_per_s']:.1f} rec/s, ratio {out[-1]['ratio']}", flush=True)
    return out


def measure(args: argparse.Namespace, articles) -> tuple[list[dict], dict, dict]:
    """With a local Ray and the gateway on a free port: F1's rounds, then F2's restart and kill."""
    config = gateway_config()
    base = f"http://127.0.0.1:{free_port()}"
    with local_ray(log_to_driver=False):
        start_gateway(config, int(base.rsplit(":", 1)[1]), 0)
        asyncio.run(direct_rate(base, [a.text for a in articles][:64], args.max_requests))  # warm-up
        work = Path(tempfile.mkdtemp(prefix="stream-bench-"))
        rounds = f1_rounds(base, articles, work, args.rounds, args.max_requests)
        print("[F2] gateway restart mid-stream...", flush=True)
        restart = f2_restart(base, config, articles, work)
        print(f"[F2] restart: {restart}", flush=True)
        print("[F2] job killed and restored...", flush=True)
        kill = f2_kill(base, articles, work)
        print(f"[F2] kill: {kill}", flush=True)
    return rounds, restart, kill


def stream_report(args: argparse.Namespace, rounds: list[dict], restart: dict, kill: dict) -> dict:
    f1 = statistics.median(r["ratio"] for r in rounds)
    lost = restart["lost"] + kill["lost"]
    mid_stream = restart["mid_stream"] and kill["mid_stream"]  # else the event came too late to test anything
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
        "setup": {"records": args.records, "batch_size": BATCH, "max_requests": args.max_requests,
                  "model": "prepared BBC classifier (MiniLM), max_length 128, 1 replica, 1 thread"},
        "targets": [
            {"id": "F1", "measure": "records/s job / direct async client (median of rounds)", "value": f1,
             "target": ">= 0.8", "pass": f1 >= 0.8},
            {"id": "F2", "measure": "records lost (gateway restart + job kill/restore)", "value": lost,
             "target": "0", "pass": lost == 0 and mid_stream, "mid_stream": mid_stream},
        ],
        "f1_rounds": [{k: (round(v, 1) if k == "records_per_s" else v) for k, v in r.items()} for r in rounds],
        "f2_restart": restart, "f2_kill": kill,
        "guarantee": "exactly once in the committed files (transactional file sink), at least once to the gateway",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from serve_app.builders.bbc import load_articles

    report = stream_report(args, *measure(args, load_articles()[:args.records]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["targets"], indent=2))
    return 0 if all(t["pass"] for t in report["targets"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
