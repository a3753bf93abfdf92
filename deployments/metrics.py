"""`Metrics` through Ray's metrics system (ray.util.metrics), created lazily once per process."""

from __future__ import annotations

from ray.util import metrics as ray_metrics

from serve_app.metrics import BATCH_BUCKETS, LATENCY_BUCKETS_S, METRICS


def metrics_for(enabled: bool):
    """RayMetrics, or NullMetrics when the config turns metrics off."""
    from serve_app.metrics import NullMetrics

    return RayMetrics() if enabled else NullMetrics()


class RayMetrics:
    def __init__(self):
        self._made: dict[str, object] = {}

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
        self._metric(name).set(value, tags=labels)
