"""Measure variants the way they are served: through the same runtimes the deployments use.

Quality: held-out accuracy (classifiers); ROUGE-L of the summary against the article's headline and against the
parent's summary (summarizers). Speed: p50 latency at batch 1 and 16 with inputs cut to 128 tokens, throughput
at batch 16, generated tokens/s. Speed rounds of all variants are interleaved, so a noisy neighbour slows every
variant alike instead of whichever happened to run at the time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from serve_app.optimize.build import weights_size
from serve_app.runtime.classifier import load_classifier
from serve_app.tasks import TASKS

# The quality measure that gates a task's optimized variants, as its contract names it.
QUALITY_KEY = {name: task.quality_metric for name, task in TASKS.items() if task.quality_metric}
Tick = Callable[[str], None]


@dataclass(frozen=True)
class Example:
    text: str
    label: str  # the topic (classifiers) or the headline (summarizers)


def bbc_held_out(limit: int | None = None) -> list[Example]:
    from serve_app.builders import bbc

    _, held_out = bbc.split(bbc.load_articles())
    return [Example(a.text, a.label) for a in held_out[:limit]]


def bbc_headlines(limit: int) -> list[Example]:
    """Held-out articles without their headline, one topic after another so a few cover every topic."""
    from serve_app.builders import bbc

    _, held_out = bbc.split(bbc.load_articles())
    by_topic: dict[str, list] = {}
    for a in held_out:
        by_topic.setdefault(a.label, []).append(a)
    rounds = zip(*by_topic.values())
    picked = [a for group in rounds for a in group][:limit]
    return [Example(a.text[len(a.headline):].strip(), a.headline) for a in picked]


def bbc_calibration(count: int = 64) -> list[str]:
    """Training-split texts for ranking heads: the held-out split stays unseen until the evaluation."""
    from serve_app.builders import bbc

    train, _ = bbc.split(bbc.load_articles())
    step = max(1, len(train) // count)
    return [a.text for a in train[::step][:count]]


def bbc_training_texts(limit: int | None = None) -> list[str]:
    """The training split's texts, without their labels: what a layer-pruned student is distilled on."""
    from serve_app.builders import bbc

    train, _ = bbc.split(bbc.load_articles())
    return [a.text for a in train[:limit]]


def accuracy(runtime, examples: list[Example], batch: int = 16, tick: Tick | None = None) -> float:
    correct = 0
    for i in range(0, len(examples), batch):
        chunk = examples[i:i + batch]
        predicted = runtime.predict([e.text for e in chunk], batch)
        correct += sum(p["label"] == e.label for p, e in zip(predicted, chunk))
        if tick:
            tick(f"{min(i + batch, len(examples))}/{len(examples)}")
    return 100.0 * correct / len(examples)


def speed(runtimes: dict[str, object], texts: list[str], rounds: int = 8, seq: int = 128,
          tick: Tick | None = None) -> dict[str, dict]:
    """p50 batch-1 and batch-16 latency (ms) and batch-16 throughput (texts/s) at `seq` tokens, interleaved."""
    batch16 = (texts * 16)[:16]
    samples = {name: {"b1": [], "b16": []} for name in runtimes}
    saved = {name: rt.max_length for name, rt in runtimes.items()}
    try:
        for rt in runtimes.values():
            rt.max_length = seq
            rt.predict(batch16, 16)  # warm-up: first calls allocate and pick kernels
        for r in range(rounds):
            for name, rt in runtimes.items():
                time.sleep(0.05)  # let the previous runtime's worker threads go idle before timing this one
                for size, batch in (("b1", batch16[r % 16:r % 16 + 1]), ("b1", batch16[15 - r % 16:16 - r % 16]),
                                    ("b16", batch16)):
                    started = time.perf_counter()
                    rt.predict(batch, 16)
                    samples[name][size].append(time.perf_counter() - started)
            if tick:
                tick(f"round {r + 1}/{rounds}")
    finally:
        for name, rt in runtimes.items():
            rt.max_length = saved[name]
    out = {}
    for name, s in samples.items():
        b1, b16 = statistics.median(s["b1"]), statistics.median(s["b16"])
        out[name] = {"p50_b1_ms": round(b1 * 1000, 2), "p50_b16_ms": round(b16 * 1000, 1),
                     "throughput_b16": round(16 / b16, 1)}
    return out


def evaluate_classifiers(folders: dict[str, Path], examples: list[Example], max_length: int = 256,
                         rounds: int = 8, tick: Tick | None = None) -> dict[str, dict]:
    """Every variant's accuracy on `examples`, size, and speed measured side by side."""
    runtimes = {name: load_classifier(folder, max_length) for name, folder in folders.items()}
    results: dict[str, dict] = {}
    for name, rt in runtimes.items():
        results[name] = {"accuracy": round(accuracy(rt, examples, tick=tick and (lambda s, n=name: tick(
            f"{n}: accuracy {s}"))), 2), "size_mb": round(weights_size(folders[name]) / 1e6, 1)}
    timing = speed(runtimes, [e.text for e in examples[:16]], rounds, tick=tick and (lambda s: tick(f"speed {s}")))
    for name in runtimes:
        results[name] |= timing[name]
    return results


def rouge_l(candidates: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (x100), stemmed."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, cand)["rougeL"].fmeasure for cand, ref in zip(candidates, references)]
    return 100.0 * sum(scores) / max(1, len(scores))


CONCURRENCY = 8  # sequences at once for a summarizer's throughput figure (a server's load, generation.max_running)


def summarize_with(runtime, max_new_tokens: int):
    """For a summarizer runtime: `one(text) -> (summary, generated tokens)` through its generation engine (greedy)
    where it has one, else its static `summarize` (seq2seq); `many(texts) -> (generated tokens, seconds)`, all at
    once (up to CONCURRENCY decode together) on a fresh engine, so no prompt is found in a cache that `one` left
    (llama.cpp's slots, vLLM's prefix cache). Returns (one, many, close)."""
    if runtime.seq2seq:
        def static(text: str) -> tuple[str, int]:
            out = runtime.summarize([text], [max_new_tokens], 1)[0]
            return out["summary"], out["generated_tokens"]

        def static_many(texts: list[str]) -> tuple[int, float]:
            started = time.perf_counter()
            out = runtime.summarize(texts, [max_new_tokens] * len(texts))
            return sum(o["generated_tokens"] for o in out), time.perf_counter() - started
        return static, static_many, lambda: None
    import threading

    from serve_app.dataplane.generation import SamplingParams
    from serve_app.runtime.engines import Sequence

    engines = [runtime.start_engine(CONCURRENCY, 512)]

    def submit(text: str) -> tuple[dict, threading.Event]:
        done, finished = {}, threading.Event()

        def sink(event: dict) -> None:
            if event["type"] == "done":
                done.update(event)
                finished.set()

        engines[-1].submit(Sequence(runtime.summary_prompt(text)[0], SamplingParams(max_new_tokens), sink))
        return done, finished

    def one(text: str) -> tuple[str, int]:
        done, finished = submit(text)
        finished.wait()
        return done["text"], done["completion_tokens"]

    def many(texts: list[str]) -> int:
        engines.pop().close()
        engines.append(runtime.start_engine(CONCURRENCY, 512))
        submit(texts[0])[1].wait()  # warm-up, as for `one`
        started = time.perf_counter()
        pending = [submit(t) for t in texts[1:]]
        for _, finished in pending:
            finished.wait()
        return sum(done["completion_tokens"] for done, _ in pending), time.perf_counter() - started

    return one, many, lambda: engines[-1].close()


def evaluate_summarizers(folders: dict[str, Path], examples: list[Example], max_new_tokens: int = 48,
                         max_length: int = 512, tick: Tick | None = None) -> dict[str, dict]:
    """ROUGE-L against headlines and against the first variant's summaries (agreement); generated tokens/s of one
    stream and of CONCURRENCY streams at once. Each folder runs on the engine it is served with (torch,
    llama.cpp, vLLM)."""
    import torch

    from serve_app.tasks.summarization import load

    results: dict[str, dict] = {}
    reference: list[str] | None = None
    for name, folder in folders.items():
        rt = load(folder, {"max_length": max_length, "resources": {"threads": torch.get_num_threads()}})
        one, many, close = summarize_with(rt, max_new_tokens)
        try:
            one(examples[0].text)  # warm-up: the first call is many times slower
            summaries, tokens, elapsed = [], 0, 0.0
            for i, e in enumerate(examples):
                started = time.perf_counter()
                summary, generated = one(e.text)
                elapsed += time.perf_counter() - started
                summaries.append(summary)
                tokens += generated
                if tick:
                    tick(f"{name}: summary {i + 1}/{len(examples)}")
            if tick:
                tick(f"{name}: {len(examples)} summaries, {CONCURRENCY} at once")
            batched_tokens, batched_s = many([e.text for e in examples])
        finally:
            close()
        reference = reference or summaries
        results[name] = {
            "rougeL_headline": round(rouge_l(summaries, [e.label for e in examples]), 2),
            "rougeL_vs_first": round(rouge_l(summaries, reference), 2),
            "tokens_per_s": round(tokens / elapsed, 1),
            f"tokens_per_s_c{CONCURRENCY}": round(batched_tokens / batched_s, 1),
            "size_mb": round(weights_size(folder) / 1e6, 1),
        }
        del rt
    return results


def gate(parent: dict, variant: dict, task: str, max_drop: float) -> tuple[bool, float]:
    """Accept when quality fell by at most `max_drop` points. Returns (accepted, drop in points)."""
    key = QUALITY_KEY[task]
    drop = round(parent[key] - variant[key], 2)
    return drop <= max_drop, drop
