"""The README's generation section, from docs/bench/generation.json and generation-cpu-split.json alone
(`python scripts/readme_generation.py` writes it; tests/unit/bench/test_readme_figures.py fails when stale)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

# END is a marker of its own so that sections after this one are never taken into the spliced text
START, END = "**Generation targets**", "<!-- generation.json: end"


def _targets_table(d: dict) -> str:
    t = {x["id"]: x for x in d["targets"]}

    def cell(i):
        x = t[i]
        v = "not measured" if x["value"] is None else f"{x['value']:g} (repeats {x['spread'][0]:g}–{x['spread'][1]:g})"
        return f"| {i} | {x['measure']} | {v} | {x['target']} — {'met' if x['met'] else 'missed'} |"
    return "\n".join(cell(i) for i in ("G1", "G2", "G3", "G4", "P5", "P10", "P11"))


def _intro(d: dict, repeats: int) -> str:
    source = d.get("source") or "`python -m serve_app.bench.generation`"
    return f"""**Generation targets** (issue 29; `serve_app/bench/generation/`, run by `make bench` and standalone by
`python -m serve_app.bench.generation`; the committed [docs/bench/generation.json](docs/bench/generation.json)
and [generation.png](docs/bench/generation.png) come from {source} of {d.get("date", "an undated run")}; the
figures below are read from that file, {repeats} repeat(s)).
The real SmolLM2 as `summarizer@stable` serves it: the vLLM bf16 variant `make models` measured fastest here.
Held-out BBC articles cut to 256 tokens, `max_new_tokens` 64, greedy, 2 threads. Each repeat uses fresh articles
and runs side by side, on the same prompt ids: the gateway (streamed `/v1/summarize`) one at a time and 8 at once
(32 requests); its engine in process (our vLLM adapter, no Ray or HTTP); vLLM standalone (its own `AsyncLLM` in a
child process, bf16, compiled, tcmalloc and Intel OpenMP preloaded); llama.cpp standalone (llama-cpp-python's stock
`Llama.generate`) and batched (its batch API) on the Q4_0 GGUF, its fastest type here; and the torch engine this
gateway used before, in process, on the same weights in fp32. Ratios are taken within a repeat:
"""


def _missed(d: dict) -> str:
    return ", ".join(x["id"] for x in d["targets"] if not x["met"]) or "none"


def _cpu_figures(split: dict) -> tuple[float, str, float]:
    """(engine cores, the other processes' cores as text, serving-path CPU ms per token) of the CPU split."""
    cores = split["cores_by_role"]
    engine_cores = sum(v for k, v in cores.items() if k.startswith("vLLM engine"))
    serving = {k: v for k, v in cores.items() if not k.startswith("vLLM engine") and v >= 0.02}
    path_ms = sum(v for k, v in cores.items() if k.startswith(("ingress", "summarizer replica", "Ray's HTTP proxy"))) \
        / split["tokens_per_s"] * 1000
    return engine_cores, ", ".join(f"{k} {v:.2f}" for k, v in serving.items()), path_ms


def render(d: dict, split: dict) -> str:
    rows = d["repeats"]

    def med(k: str, f: str) -> float:
        return statistics.median(r[f][k] for r in rows)
    table = "\n".join(f"| {k} | {med(k, 'tokens_per_s'):.1f} | {med(k, 'p50_ttft_s'):.2f} s |"
                      for k in rows[0]["tokens_per_s"])
    eng_p10 = [round(r["engine_p10"], 2) for r in rows]
    engine_cores, split_text, path_ms = _cpu_figures(split)
    missed = _missed(d)
    text = _intro(d, len(rows)) + f"""
| id | measure | value (median) | target |
|---|---|---|---|
{_targets_table(d)}

| run (median of repeats) | tokens/s | p50 time to first token |
|---|---:|---:|
{table}

Missed in this run: {missed}. G1 divides one stream
through the gateway (on vLLM, which `make models` chose for 8 streams at once) by llama.cpp's Q4_0 standalone, the
fastest single stream here. G2 and P11 compare the gateway with the same engine without Ray Serve; on 2 cores the
engine's two OpenMP threads already take every core, so the serving path (replica, ingress, proxy, the client's
HTTP; several messages per token) takes its CPU from the engine: {med('gateway_c8', 'tokens_per_s'):.0f} against
{med('inproc_c8', 'tokens_per_s'):.0f} tokens/s in process. At the first token the same path costs
{med('gateway_c1', 'p50_ttft_s') * 1000:.0f} ms against vLLM's {med('vllm_c1', 'p50_ttft_s') * 1000:.0f} ms (G4). P10 is
mostly the engine's own scheduling: vLLM in process at 8 ÷ vLLM standalone at 1 gave {eng_p10} for the first token
(per repeat). Where the CPU goes at 8 streams
(`python -m serve_app.bench.generation.cpu_split`,
[docs/bench/generation-cpu-split.json](docs/bench/generation-cpu-split.json):
CPU seconds per process over one closed loop of {split['seconds']} s): the engine core {engine_cores:.2f} of the
{split['cores_total']:.2f} cores busy; {split_text}; so the engine runs on {engine_cores / 2 * 100:.0f}% of the
machine where its standalone peer has all of it, and its two OpenMP threads stall whenever a core is taken.
Proxy, ingress and replica together spent {path_ms:.1f} ms of CPU per generated token; for G2 ≥ 0.9 at the ~200
tokens/s the engine reaches alone, the whole serving path would have to stay under ~0.2 cores, about 1 ms per token.
With cores to spare (any GPU host, where
the engine runs on the GPU) the path no longer competes with the engine. Sending
tokens at most every 40 ms (fewer messages) did not lift G2 beyond this machine's run-to-run spread, so it is not
in. Absolute figures drift with this shared machine by ±20% between runs; only ratios within a repeat are compared.
"""
    return text


def splice(readme: str, text: str) -> str:
    a, b = readme.index(START), readme.index(END)
    return readme[:a] + text + "\n" + readme[b:]


def load(root: Path) -> tuple[dict, dict]:
    bench = root / "docs" / "bench"
    return (json.loads((bench / "generation.json").read_text()),
            json.loads((bench / "generation-cpu-split.json").read_text()))
