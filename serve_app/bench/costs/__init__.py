"""What single features cost, each measured side by side in one run on this machine (run after `make models`):

    python -m serve_app.bench.costs.metrics_overhead   classify p50 with gateway metrics on vs off; sidecar CPU
    python -m serve_app.bench.costs.pipeline_latency   p50 of each built-in pipeline; 3-way no-op fan-out vs one
    python -m serve_app.bench.costs.protocol_latency   classify p50 over the simple API, OIP REST (JSON, binary), gRPC
    python -m serve_app.bench.costs.registry_costs     cold pull vs cached load (S3, local store); hot load/unload
"""
