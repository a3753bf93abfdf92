"""Soak test: steady load at ~70% of measured capacity, with known inputs and the answers they must get.

    python scripts/soak.py                     # 10 minutes (SOAK_SECONDS overrides), real classifier if prepared
    python scripts/soak.py --short             # 30 s on an identity model (what CI runs, via tests/integration)
    python scripts/soak.py --url http://127.0.0.1:8000 --model classifier   # against a gateway already running
    python scripts/soak.py --model mixed       # classify, summarize, a pipeline, over HTTP and gRPC together

Steps: record each input's reference answer; measure capacity with a closed loop; send an open-loop stream at
`--load` x capacity, checking every answer against its reference: a warm-up, then RSS of every Ray process,
then the soak's length, then RSS again. The JSON report gives requests, errors, wrong answers,
latency percentiles and RSS before/after (total and per serving process, growth in %). Exit status 1 when
there were errors, wrong answers, or RSS growth of 5% or more (R1 of the reliability issue).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
RSS_GROWTH_LIMIT_PCT = 5.0

TEXTS = [
    "Shares in the bank fell 5% after quarterly profits missed analysts' forecasts.",
    "The striker scored twice as the home side won the cup final in extra time.",
    "Parliament will vote next week on the government's plans to reform the health service.",
    "The band's new album went straight to number one in the charts on its release.",
    "The company unveiled a faster chip for smartphones at its annual developer conference.",
    "Oil prices rose sharply after producers agreed to cut output for another six months.",
    "The film won best picture and best director at the awards ceremony on Sunday night.",
    "The minister resigned after a row over the handling of the inquiry into party funding.",
]


@dataclass
class Target:
    """How to call one model and what counts as the right answer."""

    base_url: str
    model: str
    task: str  # identity | classification
    headers: dict = field(default_factory=dict)

    def request(self, text: str) -> tuple[str, dict]:
        if self.task == "identity":
            return f"/v2/models/{self.model}/infer", {"inputs": [
                {"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}
        return "/v1/classify", {"texts": [text], "model": self.model}

    def answer(self, body: dict) -> object:
        if self.task == "identity":
            return body["outputs"][0]["data"][0]
        result = body["results"][0]
        return result["label"], {k: round(v, 4) for k, v in result["probabilities"].items()}

    @staticmethod
    def same(expected: object, got: object) -> bool:
        if isinstance(expected, tuple):  # label exact, probabilities within 1e-3 (batching changes fp order)
            return expected[0] == got[0] and all(abs(expected[1][k] - got[1].get(k, -1)) < 1e-3 for k in expected[1])
        return expected == got


def reference_key(target, text: str, i: int) -> tuple:
    """Which reference answer request i must match: per text, and per kind of call in a mixed soak."""
    kinds = getattr(target, "kinds", None)
    return (kinds[i % len(kinds)][0], text) if kinds else (text,)


@dataclass
class MixedTarget:
    """The mixed soak: request i is kind i % 5 - classify over the simple API, classify over OIP gRPC,
    summarize (8 new tokens), the classify_ensemble pipeline (two classifiers fused) and classify over OIP
    REST - so HTTP and gRPC, both models and a pipeline run together. Answers: label and probabilities within
    1e-3 for classifiers, the exact summary (greedy; the soak's summarizer does not batch, see soak_config)."""

    base_url: str
    grpc_target: str
    headers: dict = field(default_factory=dict)
    model: str = "mixed"
    task: str = "mixed"
    kinds: tuple = (("classify_http",), ("classify_grpc",), ("summarize_http",), ("pipeline_http",),
                    ("classify_oip_rest",))

    def __post_init__(self):
        import grpc

        sys.path.insert(0, str(REPO))
        from serve_app.protocols.grpc_stubs import service_pb2, service_pb2_grpc

        self._pb = service_pb2
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(self.grpc_target))
        self._metadata = [(k.lower(), v) for k, v in self.headers.items()]

    def call(self, client: httpx.Client, text: str, i: int):
        kind = self.kinds[i % len(self.kinds)][0]
        started = time.perf_counter()
        try:
            if kind == "classify_grpc":
                return self._grpc(text, started)
            path, body = {
                "classify_http": ("/v1/classify", {"texts": [text], "model": "classifier"}),
                "summarize_http": ("/v1/summarize", {"texts": [text], "model": "summarizer", "max_new_tokens": 8}),
                "pipeline_http": ("/v1/pipelines/classify_ensemble", {"texts": [text]}),
                "classify_oip_rest": ("/v2/models/classifier/infer", {"inputs": [
                    {"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}),
            }[kind]
            r = client.post(path, json=body)
        except httpx.HTTPError as err:
            return None, time.perf_counter() - started, type(err).__name__
        elapsed = time.perf_counter() - started
        if r.status_code != 200:
            return None, elapsed, r.status_code
        out = r.json()
        if kind == "summarize_http":
            return out["results"][0]["summary"], elapsed, 200
        if kind == "classify_oip_rest":
            tensors = {o["name"]: o for o in out["outputs"]}
            labels = json.loads(tensors["probabilities"]["parameters"]["labels"])
            probs = dict(zip(labels, tensors["probabilities"]["data"], strict=True))
            return (tensors["label"]["data"][0], {k: round(v, 4) for k, v in probs.items()}), elapsed, 200
        result = out["results"][0]
        return (result["label"], {k: round(v, 4) for k, v in result["probabilities"].items()}), elapsed, 200

    def _grpc(self, text: str, started: float):
        import grpc
        import struct

        pb = self._pb
        request = pb.ModelInferRequest(model_name="classifier")
        request.inputs.add(name="text", datatype="BYTES", shape=[1])
        request.raw_input_contents.append(struct.pack("<I", len(text.encode())) + text.encode())
        try:
            response = self._stub.ModelInfer(request, metadata=self._metadata, timeout=30)
        except grpc.RpcError as err:
            return None, time.perf_counter() - started, f"grpc:{err.code().name}"
        elapsed = time.perf_counter() - started
        outputs = {o.name: (o, raw) for o, raw in zip(response.outputs, response.raw_output_contents, strict=True)}
        label_raw = outputs["label"][1]
        label = label_raw[4:4 + struct.unpack_from("<I", label_raw)[0]].decode()
        tensor, raw = outputs["probabilities"]
        labels = json.loads(tensor.parameters["labels"].string_param)
        values = struct.unpack(f"<{len(labels)}f", raw)
        return (label, {k: round(v, 4) for k, v in zip(labels, values, strict=True)}), elapsed, 200

    @staticmethod
    def same(expected: object, got: object) -> bool:
        return Target.same(expected, got)


def ray_processes() -> dict[int, tuple[str, int]]:
    """pid -> (name, RSS bytes) for Ray's processes on this machine: workers and replicas (process titles
    `ray::...`), raylet, GCS and their helpers."""
    found = {}
    for p in psutil.process_iter(["name", "cmdline", "memory_info"]):
        cmd = " ".join(p.info["cmdline"] or [])
        helper = "/ray/" in cmd and any(k in cmd for k in ("raylet", "gcs_server", "ray/_private", "ray/dashboard"))
        if cmd.startswith("ray::") or helper:
            if p.info["memory_info"] is not None:
                found[p.pid] = (cmd.split(" ")[0][:60], p.info["memory_info"].rss)
    return found


def rss_report(before: dict, after: dict) -> dict:
    """Growth of the processes alive at both samples (new or gone processes are listed, not summed)."""
    both = sorted(set(before) & set(after))
    total_before = sum(before[p][1] for p in both)
    total_after = sum(after[p][1] for p in both)
    serving = [p for p in both if "ServeReplica" in before[p][0] or "Proxy" in before[p][0]]
    return {
        "processes": len(both),
        "rss_before_mb": round(total_before / 2**20, 1),
        "rss_after_mb": round(total_after / 2**20, 1),
        "rss_growth_pct": round(100 * (total_after - total_before) / max(total_before, 1), 2),
        "serving": {before[p][0]: {"before_mb": round(before[p][1] / 2**20, 1),
                                   "after_mb": round(after[p][1] / 2**20, 1),
                                   "growth_pct": round(100 * (after[p][1] - before[p][1]) / max(before[p][1], 1), 2)}
                    for p in serving},
        "started_during_soak": len(set(after) - set(before)),
        "ended_during_soak": len(set(before) - set(after)),
    }


def call(client: httpx.Client, target, text: str, i: int = 0) -> tuple[object | None, float, int | str]:
    if hasattr(target, "call"):
        return target.call(client, text, i)
    path, body = target.request(text)
    started = time.perf_counter()
    try:
        r = client.post(path, json=body)
    except httpx.HTTPError as err:
        return None, time.perf_counter() - started, type(err).__name__
    elapsed = time.perf_counter() - started
    if r.status_code != 200:
        return None, elapsed, r.status_code
    return target.answer(r.json()), elapsed, 200


def measure_capacity(client: httpx.Client, target: Target, seconds: float, workers: int) -> float:
    """Requests per second answered by a closed loop of `workers` clients."""
    done, stop = [0], time.perf_counter() + seconds

    def loop(i: int):
        n = i
        while time.perf_counter() < stop:
            _, _, status = call(client, target, TEXTS[n % len(TEXTS)], n)
            n += workers
            if status == 200:
                done[0] += 1

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(loop, range(workers)))
    return done[0] / seconds


def progress(message: str) -> None:
    """Progress goes to stderr, unbuffered, so a 10-minute run shows it while the report goes to stdout."""
    print(message, file=sys.stderr, flush=True)


def measure_mixed_capacity(client: httpx.Client, target, seconds: float, workers: int) -> tuple[float, dict]:
    """The rate at which the round-robin mix can be sustained: a closed loop over the mix, then the number of
    kinds times the slowest kind's completion rate (the mix sends each kind equally often, so the slowest kind
    bounds it, slowed by everything that runs beside it). Neither the loop's total nor each kind's capacity
    alone will do: the total counts the fast kinds finishing many times while summaries queue, and the
    summarizer alone answered 4.3 req/s but only ~1.3 req/s with the classifiers beside it, so the 10-minute
    mixed soak at 70% of either figure had its summaries time out (938 of 5728 calls after 30 s)."""
    kinds = [k[0] for k in target.kinds]
    done, stop = dict.fromkeys(kinds, 0), time.perf_counter() + seconds
    lock = threading.Lock()

    def loop(w: int):
        n = w
        while time.perf_counter() < stop:
            _, _, status = call(client, target, TEXTS[n % len(TEXTS)], n)
            if status == 200:
                with lock:
                    done[kinds[n % len(kinds)]] += 1
            n += workers

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(loop, range(workers)))
    per_kind = {k: v / seconds for k, v in done.items()}
    return len(kinds) * min(per_kind.values()), per_kind


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


class Stream:
    """An open-loop request stream at a fixed rate: sends on schedule, whatever the answers; checks each one."""

    def __init__(self, client: httpx.Client, target: Target, reference: dict):
        self.client, self.target, self.reference = client, target, reference
        self.latencies, self.errors, self.wrong, self.statuses = [], [], [], {}
        self.sent, self.lock = 0, threading.Lock()
        self.by_kind: dict[str, dict] = {}  # per kind of call in a mixed soak: statuses and latencies

    def _one(self, i: int) -> None:
        text = TEXTS[i % len(TEXTS)]
        answer, elapsed, status = call(self.client, self.target, text, i)
        key = reference_key(self.target, text, i)
        with self.lock:
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            kind = self.by_kind.setdefault(key[0] if len(key) > 1 else "all", {"statuses": {}, "latencies": []})
            kind["statuses"][str(status)] = kind["statuses"].get(str(status), 0) + 1
            if status != 200:
                self.errors.append(status)
            elif not self.target.same(self.reference[key], answer):
                self.wrong.append((text, answer))
            else:
                self.latencies.append(elapsed)
                kind["latencies"].append(elapsed)

    def kind_report(self) -> dict:
        with self.lock:
            return {k: {"statuses": dict(v["statuses"]), "p50_ms": round(1000 * percentile(v["latencies"], 50), 1),
                        "p99_ms": round(1000 * percentile(v["latencies"], 99), 1)} for k, v in self.by_kind.items()}

    def run(self, rate: float, seconds: float, log=None, every_s: float = 30.0) -> float:
        started, n = time.perf_counter(), int(rate * seconds)
        next_report = started + every_s
        with concurrent.futures.ThreadPoolExecutor(64) as pool:
            futures = []
            for i in range(n):
                time.sleep(max(0.0, started + i / rate - time.perf_counter()))
                futures.append(pool.submit(self._one, self.sent + i))
                if log and time.perf_counter() >= next_report:  # a 10-minute run shows it is alive and how
                    next_report += every_s
                    with self.lock:
                        done, errors = len(self.latencies) + len(self.errors) + len(self.wrong), len(self.errors)
                    log(f"  {time.perf_counter() - started:.0f}/{seconds:.0f} s: sent {i + 1}, answered {done}, "
                        f"errors {errors}, wrong {len(self.wrong)}, p50 {1000 * percentile(self.latencies, 50):.0f} ms")
                    if len(self.by_kind) > 1:
                        log("    " + "; ".join(f"{k} p50 {v['p50_ms']:.0f} ms p99 {v['p99_ms']:.0f} ms {v['statuses']}"
                                              for k, v in self.kind_report().items()))
            for f in futures:
                f.result()
        self.sent += n
        return time.perf_counter() - started


class RssSampler:
    """RSS of every serving process (replicas, proxies) every `every_s` seconds while the soak runs: a curve
    that flattens after warm-up is an allocator settling, one that keeps rising is a leak."""

    def __init__(self, every_s: float):
        self.every_s, self.samples, self._stop = every_s, [], threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        started = time.perf_counter()
        while True:
            now = {name: rss for name, rss in ray_processes().values()
                   if "ServeReplica" in name or "Proxy" in name}
            self.samples.append((round(time.perf_counter() - started, 1), now))
            if self._stop.wait(self.every_s):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def timeline(self) -> dict:
        """Per process: the sample times and MB, and the growth over the second half alone (midpoint to end),
        which is what separates a leak from memory taken once."""
        names = sorted({n for _, sample in self.samples for n in sample})
        out = {}
        for name in names:
            points = [(t, sample[name]) for t, sample in self.samples if name in sample]
            mid = points[len(points) // 2][1]
            out[name] = {"t_s": [t for t, _ in points], "mb": [round(r / 2**20, 1) for _, r in points],
                         "second_half_growth_pct": round(100 * (points[-1][1] - mid) / max(mid, 1), 2)}
        return out


def plot_timeline(timeline: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, series in timeline.items():
        ax.plot(series["t_s"], series["mb"], marker=".", label=name.removeprefix("ray::"))
    ax.set_xlabel("seconds into the soak (after warm-up)")
    ax.set_ylabel("RSS (MB)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_soak(target: Target, seconds: float, load: float = 0.7, capacity_s: float = 10.0, workers: int = 32,
             warmup_s: float | None = None, log=None) -> dict:
    """Drive a running gateway; return the report (see the module docstring).

    RSS is sampled after a warm-up at the soak's rate (default 15% of its length, 5-60 s): allocators, caches
    and connection pools fill in the first seconds of load, and that is not growth that goes on.

    Capacity is measured by a closed loop of `workers` clients, near the stream's own 64 in flight: with 8
    clients a 5 s loop measured 44 req/s on the real classifier, and the open-loop stream then sustained only
    14 req/s, so the 10-minute soak ran overloaded (1296 s, p50 4.5 s) instead of at 70%."""
    warmup_s = min(60.0, max(5.0, 0.15 * seconds)) if warmup_s is None else warmup_s
    log = log or progress
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with httpx.Client(base_url=target.base_url, headers=target.headers, timeout=30, limits=limits) as client:
        reference = {}
        for i in range(len(TEXTS) * len(getattr(target, "kinds", [None]))):
            text = TEXTS[i % len(TEXTS)]
            answer, _, status = call(client, target, text, i)
            if status != 200:
                raise RuntimeError(f"warm-up call failed with {status}: is {target.model} served at {target.base_url}?")
            reference[reference_key(target, text, i)] = answer
        if target.task == "identity":
            assert all(reference[(t,)] == t for t in TEXTS), "the identity model must echo its input"
        per_kind_capacity = {}
        if hasattr(target, "kinds"):
            # Longer than a single model's loop: a summary queued behind 30 others takes seconds to come back.
            capacity, per_kind_capacity = measure_mixed_capacity(client, target, 3 * capacity_s, workers)
            log("answered per kind in the mixed closed loop (req/s): " + ", ".join(f"{k} {v:.1f}" for k, v in per_kind_capacity.items()))
        else:
            capacity = measure_capacity(client, target, capacity_s, workers)
        rate = load * capacity
        log(f"capacity {capacity:.1f} req/s; {warmup_s:.0f} s warm-up, then {seconds:.0f} s at {rate:.1f} req/s")
        stream = Stream(client, target, reference)
        stream.run(rate, warmup_s)
        warmup_requests = stream.sent
        rss_before = ray_processes()
        with RssSampler(max(5.0, seconds / 40)) as sampler:
            elapsed = stream.run(rate, seconds, log=log)
        rss_after = ray_processes()
    n = stream.sent - warmup_requests
    per_kind = {}
    if hasattr(target, "kinds"):
        per_kind = {"mix": [k[0] for k in target.kinds],
                    "capacity_per_kind_rps": {k: round(v, 1) for k, v in per_kind_capacity.items()}}
    return {
        **per_kind,
        "model": target.model, "task": target.task, "seconds": round(elapsed, 1), "warmup_s": round(warmup_s, 1),
        "capacity_rps": round(capacity, 1), "target_rps": round(rate, 1), "achieved_rps": round(n / elapsed, 1),
        "requests": stream.sent, "errors": len(stream.errors), "wrong_answers": len(stream.wrong),
        "statuses": stream.statuses, "by_kind": stream.kind_report(),
        "latency_p50_ms": round(1000 * percentile(stream.latencies, 50), 1),
        "latency_p99_ms": round(1000 * percentile(stream.latencies, 99), 1),
        **rss_report(rss_before, rss_after),
        "rss_timeline": sampler.timeline(),
    }


def passed(report: dict) -> bool:
    return report["errors"] == 0 and report["wrong_answers"] == 0 and report["rss_growth_pct"] < RSS_GROWTH_LIMIT_PCT


def soak_config(model: str) -> dict:
    """identity: no weights (CI); classifier: the prepared BBC classifier from ./models (make models); mixed:
    both prepared models and the classify_ensemble pipeline (the summarizer unbatched, so that its greedy
    summaries are bit-identical to the reference whatever else shares the batch)."""
    cpu = {"num_gpus": 0, "num_cpus": 0.1}
    if model == "mixed":
        clf = {"task": "classification", "source": "classifier",
               "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.01},
               "resources": {"num_cpus": 0.4, "num_gpus": "auto", "threads": 1}}
        return {"models": [
            {"name": "classifier", "max_length": 128, **clf},
            {"name": "classifier-lead", "max_length": 64, **clf},
            {"name": "summarizer", "task": "summarization", "source": "summarizer", "max_length": 256,
             "batching": {"max_batch_size": 1, "batch_wait_timeout_s": 0.0},
             "resources": {"num_cpus": 0.4, "num_gpus": "auto", "threads": 1},
             "generation": {"max_new_tokens": 8, "max_new_tokens_limit": 16}}],
            "pipelines": [{"name": "classify_ensemble", "graph": {
                "type": "fuse", "method": "weighted_average", "weights": {"full": 2, "lead": 1},
                "source": {"type": "fanout", "branches": {"full": {"type": "model", "model": "classifier"},
                                                          "lead": {"type": "model", "model": "classifier-lead"}}}}}]}
    if model == "identity":
        return {"models": [{"name": "soak-echo", "task": "identity", "delay_ms": 20,
                            "resources": {**cpu, "max_ongoing_requests": 64}}]}
    return {"models": [{"name": "classifier", "task": "classification", "source": "classifier", "max_length": 128,
                        "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.01},
                        "resources": {"num_cpus": 0.5, "num_gpus": "auto", "threads": 1}}]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    parser.add_argument("--short", action="store_true", help="30 s on an identity model (CI)")
    parser.add_argument("--model", choices=["auto", "identity", "classifier", "mixed"], default="auto",
                        help="auto: the prepared classifier when ./models/classifier exists, else identity")
    parser.add_argument("--load", type=float, default=0.7, help="fraction of measured capacity to send")
    parser.add_argument("--url", help="soak a gateway already running here instead of starting one")
    parser.add_argument("--token", default=os.environ.get("GATEWAY_INFERENCE_TOKEN"), help="inference token")
    parser.add_argument("--json-out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.short:
        args.seconds, args.model = min(args.seconds, 30.0), "identity"
    if args.model == "auto":
        args.model = "classifier" if (REPO / "models" / "classifier" / "config.json").is_file() else "identity"
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    name = "soak-echo" if args.model == "identity" else "classifier"
    task = "identity" if args.model == "identity" else "classification"

    if args.model == "mixed":
        name, task = "mixed", "mixed"
    if args.url:
        if args.model == "mixed":
            raise SystemExit("--model mixed starts its own gateway (it needs the gRPC port); drop --url")
        report = run_soak(Target(args.url, name, task, headers), args.seconds, args.load)
    else:
        report = _run_local(args, name, task, headers)
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
        plot_timeline(report["rss_timeline"], args.json_out.with_suffix(".png"),
                      f"RSS during the {args.model} soak ({report['seconds']:.0f} s at {report['target_rps']} req/s)")
    ok = passed(report)
    print("soak:", "PASS" if ok else "FAIL", f"(errors {report['errors']}, wrong {report['wrong_answers']}, "
          f"RSS growth {report['rss_growth_pct']}% < {RSS_GROWTH_LIMIT_PCT}%)", file=sys.stderr)
    return 0 if ok else 1


def _run_local(args, name: str, task: str, headers: dict) -> dict:
    """Start a local Ray and Serve on free ports, deploy the soak config, soak it, and shut down."""
    import socket

    sys.path.insert(0, str(REPO))
    from serve_app.config.serve_env import use_fast_path

    use_fast_path()  # the mode `make run` uses; before Ray is imported
    import ray
    from ray import serve

    from deployments.assemble import deploy, start_serve
    from serve_app.config import parse_config
    from serve_app.config.settings import GatewaySettings

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    port, grpc_port = free_port(), (free_port() if args.model == "mixed" else 0)
    config = parse_config({**soak_config(args.model), "server": {"grpc_port": grpc_port}},
                          settings=GatewaySettings(models_dir=REPO / "models"))
    ray.init(address="local", include_dashboard=False, logging_level="error", log_to_driver=False)
    try:
        start_serve(config, "127.0.0.1", port, grpc_port)
        deploy(config, gpus_in_cluster=ray.cluster_resources().get("GPU", 0))
        base = f"http://127.0.0.1:{port}"
        target = (MixedTarget(base, f"127.0.0.1:{grpc_port}", headers) if args.model == "mixed"
                  else Target(base, name, task, headers))
        return run_soak(target, args.seconds, args.load)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
