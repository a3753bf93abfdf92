"""`measure`: the repeats of a generation run, one row each; `targets(rows)`: P5, P10 and P11 from them."""

from __future__ import annotations

import statistics
from pathlib import Path

from serve_app.bench.generation.clients import Run, closed_loop, engine_call, gateway_call
from serve_app.bench.generation.settings import GenSettings


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
                rows.append(_row(ip, c1, c8, settings.concurrency))
                tick(f"repeat {r + 1}: P5 {rows[-1]['p5']:.2f}, P10 {rows[-1]['p10']:.2f}, P11 {rows[-1]['p11']:.2f}")
    finally:
        engine.close()
        torch.set_num_threads(threads)
    return rows


def _row(ip: Run, c1: Run, c8: Run, concurrency: int) -> dict:
    """One repeat's figures: in-process engine at c8 (`ip`), gateway at c1 and at c8, and their ratios."""
    return {"inproc_tps": ip.tokens_per_s, "c1_tps": c1.tokens_per_s, "c8_tps": c8.tokens_per_s,
            "inproc_ttft": ip.p50_ttft_s, "c1_ttft": c1.p50_ttft_s, "c8_ttft": c8.p50_ttft_s,
            "c8_ttft_first_wave": c8.first_wave,
            "c8_ttft_p50_all": statistics.median(c8.ttft_s.values()),
            "c8_ttft_steady": [round(t, 3) for i, t in sorted(c8.ttft_s.items()) if i >= concurrency],
            "tokens": {"inproc": ip.tokens, "c1": c1.tokens, "c8": c8.tokens},
            "p5": _ratio(c8.tokens_per_s, c1.tokens_per_s),
            "p10": _ratio(c8.p50_ttft_s, c1.p50_ttft_s),
            "p11": _ratio(c8.tokens_per_s, ip.tokens_per_s)}
