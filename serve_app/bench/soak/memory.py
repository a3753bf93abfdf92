"""RSS of Ray's processes: one sample (before/after the soak), a sampler through it, and its plot."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil


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
