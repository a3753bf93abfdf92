"""Inference over unbounded streams with Apache Flink (PyFlink): every record enriched by the gateway or by an
ONNX edge bundle inside the Flink operator.

    records.py   parse a source line into a Record or a dead letter (with its reason); the output formats
    retry.py     which answers are retried, and how long to wait (Retry-After first, else capped back-off)
    enrich.py    the async gateway client: micro-batches sized to the model's batch, bounded requests in flight,
                 a per-record deadline, retries, 4xx -> dead letter (a rejected batch is split to find the record)
    edge.py      the same output from an edge bundle's onnxruntime classifier, in-process
    options.py   the job's command line (`gateway stream --help`), shared by the launcher and the job
    job.py       the PyFlink DataStream job (imports pyflink: runs in the Flink venv, `make flink-venv`)
    cli.py       `gateway stream`: runs job.py with the Flink venv's Python
    bench.py     F1 (job vs a direct async client) and F2 (records lost) -> docs/bench/stream.json

Everything here but job.py uses only the standard library and aiohttp/onnxruntime, so it imports in both the
gateway's venv (unit tests) and the Flink venv (the job's Python workers).
"""
