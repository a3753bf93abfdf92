"""Bench results as a table (markdown and console), JSON, and PNG plots of throughput and p99 by concurrency."""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def medians(sweep: dict) -> dict[str, dict[int, dict]]:
    """Per target and concurrency, the median of each figure over the repeats."""
    out: dict[str, dict[int, dict]] = {}
    for target, by_c in sweep.items():
        out[target] = {}
        for c, samples in by_c.items():
            keys = ("rps", "p50_ms", "p95_ms", "p99_ms")
            out[target][int(c)] = {k: round(statistics.median(s[k] for s in samples), 2) for k in keys}
            out[target][int(c)]["errors"] = sum(s["errors"] for s in samples)
    return out


def markdown(result: dict, machine: str) -> str:
    med = medians(result["sweep"])
    concurrencies = sorted(next(iter(med.values())))
    lines = [f"Machine: {machine}. Medians of {result['settings']['repeats']} repeats of "
             f"{result['settings']['window_s']:g} s windows; one text per request, "
             f"{result['settings']['max_length']} tokens max.", "",
             "| id | measure | value | target | met |", "|---|---|---:|---|---|"]
    for t in result["targets"]:
        value = "not measured" if t["value"] is None else f"{t['value']:g}"
        lines.append(f"| {t['id']} | {t['measure']} | {value} | {t['target']} | "
                     f"{'yes' if t['met'] else '**no**'} |")
    lines += ["", "Requests/s (p50 / p99 ms) by concurrency:", "",
              "| target | " + " | ".join(f"c={c}" for c in concurrencies) + " |",
              "|---|" + "---:|" * len(concurrencies)]
    for target, by_c in med.items():
        cells = [f"{by_c[c]['rps']:g} ({by_c[c]['p50_ms']:g} / {by_c[c]['p99_ms']:g})"
                 + (f" {by_c[c]['errors']} err" if by_c[c]["errors"] else "") for c in concurrencies]
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    hops = result["hops"]
    depths = ", ".join(f"{d}: {v:.1f}" for d, v in hops["p50_ms_by_depth"].items())
    gen = result["generation"]["repeats"]
    lines += ["", f"No-op chain p50 by depth (ms): {depths}; {hops['ms_per_hop']:.2f} ms per extra hop; "
              f"3-way fan-out ÷ single: {hops['fanout3_over_single']:.2f}."]
    if gen:
        runs = gen[0]["tokens_per_s"]
        tps = {k: statistics.median(r["tokens_per_s"][k] for r in gen) for k in runs}
        lines.append("Summarizer tokens/s (streamed; medians): " + ", ".join(f"{k} {v:.1f}" for k, v in tps.items())
                     + ".")
    else:
        lines.append(f"Summarizer: the generation run failed ({result['generation'].get('error')}).")
    return "\n".join(lines) + "\n"


def plots(result: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = medians(result["sweep"])
    written = []
    for key, label, name in (("rps", "requests/s", "throughput.png"), ("p99_ms", "p99 latency (ms)", "p99.png")):
        fig, ax = plt.subplots(figsize=(8, 5))
        for target, by_c in med.items():
            cs = sorted(by_c)
            ax.plot(cs, [by_c[c][key] for c in cs], marker="o", label=target)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(label)
        if key == "p99_ms":
            ax.set_yscale("log")
        ax.set_title(f"Classifier {label} by concurrency (medians)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        written.append(out / name)
    return written


def write(result: dict, out: Path, machine: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps({"machine": machine, **result}, indent=2, default=str) + "\n")
    (out / "bench.md").write_text(markdown(result, machine))
    return [out / "bench.json", out / "bench.md", *plots(result, out)]
