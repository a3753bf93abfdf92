"""`Metrics` through Ray's metrics system (ray.util.metrics), created lazily once per process."""

from __future__ import annotations

import threading

import ray
from ray.util import metrics as ray_metrics

from serve_app.metrics import BATCH_BUCKETS, LATENCY_BUCKETS_S, METRICS


def metrics_for(enabled: bool):
    """RayMetrics, or NullMetrics when the config turns metrics off."""
    from serve_app.metrics import NullMetrics

    return RayMetrics() if enabled else NullMetrics()


def republish_interval_s() -> float:
    """How often gauges are set again. Ray's metrics agent drops a gauge series that was not set within two
    export intervals (`metrics_report_interval_ms`, 10 s by default), and a worker exports only what was set
    since its last export: a gauge set once (loaded versions, load seconds) would vanish from Prometheus
    ~20 s after it was set. Half an export interval keeps every live gauge in every export."""
    try:
        interval_ms = ray._config.metrics_report_interval_ms()
    except Exception:  # noqa: BLE001 - outside a Ray worker: Ray's default
        interval_ms = 10_000
    return max(0.5, max(interval_ms, 1000) / 2000)


class RayMetrics:
    def __init__(self):
        self._made: dict[str, object] = {}
        # Last value of every gauge series, (name, sorted labels) -> value, set again by a daemon thread.
        self._gauges: dict[tuple[str, tuple], float] = {}
        self._lock = threading.Lock()
        self._republisher: threading.Thread | None = None

    def _metric(self, name: str):
        if name not in self._made:
            kind, description, labels = METRICS[name]
            if kind == "counter":
                self._made[name] = ray_metrics.Counter(name, description, tag_keys=labels)
            elif kind == "gauge":
                self._made[name] = ray_metrics.Gauge(name, description, tag_keys=labels)
            else:
                buckets = BATCH_BUCKETS if name == "gateway_batch_size" else LATENCY_BUCKETS_S
                self._made[name] = ray_metrics.Histogram(name, description, boundaries=buckets, tag_keys=labels)
        return self._made[name]

    def inc(self, name, labels, value=1.0):
        self._metric(name).inc(value, tags=labels)

    def observe(self, name, labels, value):
        self._metric(name).observe(value, tags=labels)

    def set(self, name, labels, value):
        with self._lock:
            self._gauges[(name, tuple(sorted(labels.items())))] = value
            self._metric(name).set(value, tags=labels)
            if self._republisher is None:
                self._republisher = threading.Thread(target=self._republish_forever, args=(republish_interval_s(),),
                                                     name="gateway-gauges", daemon=True)
                self._republisher.start()

    def republish(self) -> None:
        with self._lock:
            for (name, labels), value in self._gauges.items():
                self._metric(name).set(value, tags=dict(labels))

    def _republish_forever(self, interval_s: float) -> None:
        stop = threading.Event()
        while not stop.wait(interval_s):
            self.republish()
