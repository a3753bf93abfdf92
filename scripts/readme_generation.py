"""Rewrite the README's generation-targets subsection from docs/bench/generation.json, so the README quotes the
committed run and nothing else: `python scripts/readme_generation.py` after `python -m serve_app.bench.generation`."""

import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
d = json.loads((ROOT / "docs/bench/generation.json").read_text())
rows = d["repeats"]


def med(k: str, f: str) -> float:
    return statistics.median(r[f][k] for r in rows)


t = {x["id"]: x for x in d["targets"]}
def cell(i):
    x = t[i]
    v = "not measured" if x["value"] is None else f"{x['value']:g} (repeats {x['spread'][0]:g}–{x['spread'][1]:g})"
    return f"| {i} | {x['measure']} | {v} | {x['target']} — {'met' if x['met'] else 'missed'} |"
eng_p5 = [round(r["engine_p5"], 2) for r in rows]
eng_p10 = [round(r["engine_p10"], 2) for r in rows]
runs = list(rows[0]["tokens_per_s"])
table = "\n".join(f"| {k} | {med(k, 'tokens_per_s'):.1f} | {med(k, 'p50_ttft_s'):.2f} s |" for k in runs)
g3_note = "" if t["G3"]["met"] else (
    f" G3 is bounded by the engine itself here: llama.cpp in process at 8 gave {med('inproc_c8', 'tokens_per_s'):.1f}"
    f" tokens/s against the torch engine's {med('torch_c8', 'tokens_per_s'):.1f} (the gateway kept"
    f" {t['P11']['value']:g} of its engine's throughput, P11); prefill, ~0.4 s a prompt, is most of a wave's time.")
text = f"""**Generation targets** (issue 29; `serve_app/bench/generation/`, run by `make bench` and standalone by
`python -m serve_app.bench.generation`, which wrote the committed
[docs/bench/generation.json](docs/bench/generation.json)
and [generation.png](docs/bench/generation.png) — the figures below are read from that file). The real SmolLM2
(`summarizer@stable`: the Q4_0 GGUF `make models` measured fastest) on llama.cpp, held-out BBC articles cut to 256
tokens, `max_new_tokens` 64, greedy, 2 threads, prompt reuse on (the default). Each repeat uses fresh articles
and runs side by side: the gateway
(streamed `/v1/summarize`) one at a time and 8 at once (32 requests); llama.cpp standalone (llama-cpp-python's stock
`Llama.generate`, same file, same prompt ids); the gateway's engine in process at 8 (llama.cpp's batch API, the best
standalone engine at 8 installed here: vLLM is not); and the torch engine this gateway used before, in process, on
the same weights dequantized to fp32. {len(rows)} repeats, medians of per-repeat ratios:

| id | measure | value (median) | target |
|---|---|---|---|
{chr(10).join(cell(i) for i in ("G1", "G2", "G3", "G4", "P5", "P10", "P11"))}

| run (median of repeats) | tokens/s | p50 time to first token |
|---|---:|---:|
{table}

P5 is out of reach of the engine itself on 2 cores: llama.cpp in process at 8 ÷ llama.cpp standalone one at a time
gave {eng_p5} per repeat. A prompt (~295 tokens) costs ~0.4 s of prefill compute that batching cannot share, so 8
prompts take ~3.4 s of the ~8 s a wave of 8 summaries needs. The torch engine stays for Hugging Face folders
(seq2seq checkpoints, `gateway optimize` torch variants); on this AVX-512 machine its fp32 prefill is as fast as
llama.cpp's Q4_0 (first token {med('torch_c1', 'p50_ttft_s'):.2f} s against {med('llama_c1', 'p50_ttft_s'):.2f} s
standalone), but it decodes at a third of the speed.{g3_note}
Absolute figures drift with this shared machine (a run an hour
earlier was ~25% faster throughout); the ratios are taken within one repeat.
"""
s = (ROOT / "README.md").read_text()
a = s.index("**Generation targets**")
b = s.index("## Deploy to Kubernetes")
(ROOT / "README.md").write_text(s[:a] + text + "\n" + s[b:])
