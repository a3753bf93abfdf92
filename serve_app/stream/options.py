"""The stream job's command line: `gateway stream --help` (the launcher) and `python -m serve_app.stream.job`
(the job itself, in the Flink venv) parse the same options, so --help is the same in both."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
examples:
  gateway stream --source articles.jsonl --out out/            # classify every line, then stop
  gateway stream --source inbox/ --watch 2 --out out/          # a directory watched every 2 s, forever
  gateway stream --source articles.jsonl --edge-bundle edge/ --out out/   # the ONNX model inside Flink
  gateway stream --kafka-bootstrap kafka:9092 --kafka-topic articles --kafka-jar flink-sql-connector-kafka.jar \\
                 --kafka-sink-topic articles-labelled --out out/
Outputs: OUT/results/ and OUT/dead-letters/ (JSON lines in rolling part files, committed at each checkpoint:
files starting with '.' are in progress). Checkpoints: OUT/checkpoints/ unless --checkpoint-dir;
restart a killed job with --restore OUT/checkpoints/<job id>/chk-N.
"""


def build_parser(prog: str = "gateway stream") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Classify (or summarize) every record of a stream with "
                                "Apache Flink: through the gateway, or with an ONNX edge bundle inside Flink.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("source")
    src.add_argument("--source", type=Path, help="a JSON-lines file or a directory of them")
    src.add_argument("--watch", type=float, default=0, metavar="SECONDS",
                     help="watch --source for new files every SECONDS (an unbounded stream); 0: read once, stop")
    src.add_argument("--kafka-bootstrap", help="Kafka bootstrap servers: read --kafka-topic instead of files")
    src.add_argument("--kafka-topic", help="topic to read (values are JSON records)")
    src.add_argument("--kafka-group", default="gateway-stream", help="consumer group id")
    src.add_argument("--kafka-jar", type=Path, help="flink-sql-connector-kafka jar (not shipped with PyFlink)")
    src.add_argument("--text-field", default="text", help="the field to classify (default: text)")
    src.add_argument("--key-field", default="id", help="the record's key, kept in the output (default: id)")
    model = p.add_argument_group("model")
    model.add_argument("--gateway", default="http://127.0.0.1:8000", help="the gateway's base URL")
    model.add_argument("--target", default="classify",
                       help="classify, summarize or pipeline:<name> (default: classify)")
    model.add_argument("--model", help="model name (default: the gateway's first model of the task)")
    model.add_argument("--token", help="bearer token when the gateway requires one (or GATEWAY_TOKEN)")
    model.add_argument("--edge-bundle", type=Path, help="run this edge bundle's ONNX classifier inside Flink "
                       "instead of calling the gateway")
    flow = p.add_argument_group("flow control")
    flow.add_argument("--batch-size", type=int, help="texts per call (default: the model's max_batch_size)")
    flow.add_argument("--max-requests", type=int, default=8, help="gateway calls in flight per operator")
    flow.add_argument("--capacity", type=int, default=256, help="records in flight per operator (async I/O)")
    flow.add_argument("--deadline", type=float, default=120, metavar="SECONDS",
                      help="per-record deadline: retried until then, then dead-lettered (default: 120)")
    flow.add_argument("--parallelism", type=int, default=1)
    out = p.add_argument_group("output and recovery")
    out.add_argument("--out", type=Path, required=False, help="output folder (results/, dead-letters/)")
    out.add_argument("--kafka-sink-topic", help="also write results to this Kafka topic (--kafka-bootstrap)")
    out.add_argument("--checkpoint-dir", help="a folder or a URI such as s3://bucket/checkpoints "
                     "(default: OUT/checkpoints)")
    out.add_argument("--checkpoint-interval", type=float, default=2.0, metavar="SECONDS")
    out.add_argument("--restore", type=Path, help="a retained checkpoint (chk-N folder) to resume from")
    out.add_argument("--metrics-interval", type=float, default=5.0, metavar="SECONDS",
                     help="how often Flink's metrics are written to the job log (slf4j reporter)")
    return p


def parse(argv: list[str] | None, prog: str = "gateway stream") -> argparse.Namespace:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error("--out is required")
    if (args.source is None) == (args.kafka_bootstrap is None):
        parser.error("give --source (files) or --kafka-bootstrap with --kafka-topic")
    if args.kafka_bootstrap and not args.kafka_topic:
        parser.error("--kafka-bootstrap needs --kafka-topic")
    if args.source is not None and not args.source.exists():
        parser.error(f"--source {args.source} does not exist")
    if args.edge_bundle is not None and not (args.edge_bundle / "run.py").is_file():
        parser.error(f"--edge-bundle {args.edge_bundle} is not an edge bundle (no run.py; see gateway edge-bundle)")
    for name in ("batch_size", "max_requests", "capacity", "parallelism"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.deadline <= 0 or args.checkpoint_interval <= 0:
        parser.error("--deadline and --checkpoint-interval must be positive")
    return args
