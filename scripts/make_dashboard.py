"""Write k8s/monitoring/grafana-dashboard.json from the panel list below (one place to edit panels).

    .venv/bin/python scripts/make_dashboard.py
"""

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "k8s" / "monitoring" / "grafana-dashboard.json"
Q = "histogram_quantile({q}, sum by (le, {by}) (rate(ray_gateway_{h}_bucket{sel}[1m])))"

# On a host without GPUs (gateway_gpu_count 0) the per-GPU series do not exist: GPU panels fall back to one
# series {gpu="none"} of value 0, and Grafana's "no value" text says "no GPU", instead of an empty panel.
NO_GPU = 'label_replace(gateway_gpu_count == 0, "gpu", "none", "", "")'
NO_GPU_PANELS = ("GPU utilization", "GPU memory used")

PANELS = [
    ("Traffic (requests/s)", "reqps",
     [("{{model}} {{pipeline}}", "sum by (model, pipeline) (rate(ray_gateway_requests_total[1m]))")]),
    ("Errors by kind (/s)", "reqps", [("{{kind}}", "sum by (kind) (rate(ray_gateway_errors_total[1m]))")]),
    ("Error ratio", "percentunit",
     [("errors / requests", "sum(rate(ray_gateway_errors_total[1m])) / clamp_min(sum(rate("
       "ray_gateway_request_duration_seconds_count[1m])) + sum(rate(ray_gateway_errors_total[1m])), 1e-9)")]),
    ("Latency per model (p50, p95, p99)", "s",
     [(f"p{int(q * 100)} {{{{model}}}}", Q.format(q=q, by="model", h="request_duration_seconds", sel='{pipeline=""}'))
      for q in (0.5, 0.95, 0.99)]),
    ("Latency per pipeline (p50, p95, p99)", "s",
     [(f"p{int(q * 100)} {{{{pipeline}}}}", Q.format(q=q, by="pipeline", h="request_duration_seconds",
                                                    sel='{pipeline!=""}')) for q in (0.5, 0.95, 0.99)]),
    ("Per-hop latency p95", "s",
     [("{{pipeline}} {{node}}", Q.format(q=0.95, by="pipeline, node", h="pipeline_node_duration_seconds", sel=""))]),
    ("Mean batch size", "none",
     [("{{model}}", "sum by (model) (rate(ray_gateway_batch_size_sum[1m])) / "
                    "sum by (model) (rate(ray_gateway_batch_size_count[1m]))")]),
    ("Queue depth", "none", [("{{model}}", "sum by (model) (ray_gateway_queue_depth)")]),
    ("Generation: time to first token (p50, p95)", "s",
     [(f"p{int(q * 100)} {{{{model}}}} {{{{version}}}}",
       Q.format(q=q, by="model, version", h="generation_ttft_seconds", sel="")) for q in (0.5, 0.95)]),
    ("Generation: time per output token (p50, p95)", "s",
     [(f"p{int(q * 100)} {{{{model}}}} {{{{version}}}}",
       Q.format(q=q, by="model, version", h="generation_tpot_seconds", sel="")) for q in (0.5, 0.95)]),
    ("Generation: running and waiting sequences", "none",
     [("running {{model}} {{version}}", "sum by (model, version) (ray_gateway_generation_running)"),
      ("waiting {{model}} {{version}}", "sum by (model, version) (ray_gateway_generation_waiting)")]),
    ("Generation: KV cache use", "percentunit",
     [("{{model}} {{version}}", "max by (model, version) (ray_gateway_generation_kv_cache_usage)")]),
    ("Generation: tokens/s", "none",
     [("{{model}} {{version}}", "sum by (model, version) (rate(ray_gateway_generation_tokens_total[1m]))")]),
    # Every ingress replica reports the versions it routes to (they share the routing state): the max, not the sum.
    ("Loaded versions", "none", [("{{model}}", "max by (model) (ray_gateway_loaded_versions)")]),
    # Per Ray node (each node's exporter is its own scrape target, `instance`): where the ingress replicas take
    # requests, and where the model replicas run their batches.
    ("Requests per node (ingress replicas)", "reqps",
     [("{{instance}}", "sum by (instance) (rate(ray_gateway_requests_total[1m]))")]),
    ("Model batches per node (/s)", "none",
     [("{{instance}} {{model}}", "sum by (instance, model) (rate(ray_gateway_batch_size_count[1m]))")]),
    ("Host CPU", "percentunit", [("{{instance}}", "gateway_host_cpu_utilization_ratio")]),
    ("Replica CPU (cores)", "none",
     [("{{application}}", "sum by (application) (gateway_replica_cpu_utilization_ratio)")]),
    ("Memory", "bytes", [("host used", 'gateway_host_memory_bytes{state="used"}'),
                         ("{{application}}", "sum by (application) (gateway_replica_resident_memory_bytes)")]),
    ("GPUs", "none", [("GPUs", "gateway_gpu_count")]),
    ("GPU utilization", "percentunit", [("GPU {{gpu}}", f"gateway_gpu_utilization_ratio or on() {NO_GPU}")]),
    ("GPU memory used", "percentunit",
     [("GPU {{gpu}}", '(gateway_gpu_memory_bytes{state="used"} / ignoring(state) '
                      f'gateway_gpu_memory_bytes{{state="total"}}) or on() {NO_GPU}')]),
    ("Gateway probe", "none", [("ready", "gateway_probe_success"), ("seconds", "gateway_probe_duration_seconds")]),
]


def dashboard() -> dict:
    panels = []
    for i, (title, unit, targets) in enumerate(PANELS):
        panels.append({
            "id": i + 1, "type": "timeseries", "title": title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
            "fieldConfig": {"defaults": {"unit": unit, **({"noValue": "no GPU"} if title in NO_GPU_PANELS else {})},
                            "overrides": []},
            "targets": [{"refId": chr(65 + j), "expr": expr, "legendFormat": legend}
                        for j, (legend, expr) in enumerate(targets)],
        })
    return {
        "title": "Inference gateway", "uid": "inference-gateway", "schemaVersion": 39, "version": 1,
        "tags": ["inference-gateway"], "timezone": "utc", "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "label": "Prometheus"}]},
        "panels": panels,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {OUT}")
