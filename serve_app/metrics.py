"""Gateway metrics: names, labels and buckets in one place, recorded through a `Metrics` object.

The dataplane records through the `Metrics` protocol; under Ray Serve that is `deployments.metrics.RayMetrics`,
which goes through Ray's metrics system so values from every replica and node aggregate (Ray exports them
with a `ray_` prefix, e.g. `ray_gateway_requests_total`). Labels take only configured names (models,
pipelines, versions, error kinds), never client input, so cardinality stays bounded.
"""

from __future__ import annotations

from typing import Protocol

LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]

# name -> (kind, description, label names); Prometheus naming: base units, _total for counters.
METRICS = {
    "gateway_requests": ("counter", "Model calls answered, by model, version and pipeline ('' if direct)",
                         ("model", "version", "pipeline")),
    "gateway_cache_requests": ("counter", "Model calls looked up in a response cache, by result (hit, miss, "
                               "bypass: Cache-Control no-cache)", ("model", "version", "pipeline", "result")),
    "gateway_variant_choices": ("counter", "Variants chosen for requests with a latency budget or accuracy floor, "
                                "by reason (fits, probe, floor, over_budget)", ("model", "version", "reason")),
    "gateway_priority_requests": ("counter", "Requests by priority class (high, normal, low) and outcome "
                                  "(answered, shed: refused as overloaded, failed)", ("model", "priority", "outcome")),
    "gateway_shadow_requests": ("counter", "Mirrored (shadow) calls by outcome: agreed or disagreed with the "
                                "primary's answer, failed, dropped under load", ("model", "version", "outcome")),
    "gateway_shadow_duration_seconds": ("histogram", "Latency of mirrored (shadow) calls", ("model", "version")),
    "gateway_multiplex_requests": ("counter", "Calls to a multiplexed model's replicas by outcome: hit (version "
                                   "resident), load (its first call there started the load), wait (joined a load)",
                                   ("model", "version", "outcome")),
    "gateway_multiplex_evictions": ("counter", "Versions a multiplexed replica evicted (least recently used, past "
                                    "its max_versions_per_replica)", ("model", "version")),
    "gateway_errors": ("counter", "Requests that ended in an error, by target and error kind",
                       ("model", "pipeline", "kind")),
    "gateway_request_duration_seconds": ("histogram", "End-to-end latency of a request to a model or pipeline",
                                         ("model", "pipeline")),
    "gateway_pipeline_node_duration_seconds": ("histogram", "Latency of each pipeline node (hop)",
                                               ("pipeline", "node")),
    "gateway_batch_size": ("histogram", "Texts per batched model call inside a replica", ("model", "version")),
    "gateway_queue_depth": ("gauge", "Requests in flight in a model replica", ("model", "version")),
    "gateway_model_load_seconds": ("gauge", "Seconds a model version took to load", ("model", "version")),
    "gateway_loaded_versions": ("gauge", "Model versions loaded and routable", ("model",)),
    "gateway_generation_ttft_seconds": ("histogram", "Time from a generation request reaching its replica to its "
                                        "first token", ("model", "version")),
    "gateway_generation_tpot_seconds": ("histogram", "Mean time per output token after the first, per request",
                                        ("model", "version")),
    "gateway_generation_running": ("gauge", "Sequences in the decode batch of a replica", ("model", "version")),
    "gateway_generation_waiting": ("gauge", "Sequences waiting for (or in) prefill in a replica",
                                   ("model", "version")),
    "gateway_generation_kv_cache_usage": ("gauge", "Share of a replica's KV cache in use (0-1): vLLM's own "
                                          "figure; llama.cpp and torch: tokens held / the engine's room",
                                          ("model", "version")),
    "gateway_generation_tokens": ("counter", "Tokens generated", ("model", "version")),
    "gateway_generation_finished": ("counter", "Generation requests finished, by finish reason",
                                    ("model", "version", "reason")),
}


class Metrics(Protocol):
    def inc(self, name: str, labels: dict[str, str], value: float = 1.0) -> None: ...

    def observe(self, name: str, labels: dict[str, str], value: float) -> None: ...

    def set(self, name: str, labels: dict[str, str], value: float) -> None: ...


class NullMetrics:
    """Records nothing: for unit tests and tools that run the dataplane without Ray."""

    def inc(self, name, labels, value=1.0):
        pass

    def observe(self, name, labels, value):
        pass

    def set(self, name, labels, value):
        pass
