"""The PyFlink DataStream job (runs in the Flink venv: `make flink-venv`; start it with `gateway stream`).

    source (files, a watched directory, or Kafka) -> parse (bad lines -> dead letters)
      -> async enrichment (gateway micro-batches, or the edge bundle in-process; unordered, `capacity` in flight)
      -> split -> results/ (rolling part files) and dead-letters/ (rolling part files) [, Kafka]

Guarantee: exactly once in the committed files, at least once towards the gateway. Checkpoints are on (aligned,
EXACTLY_ONCE); the file source's position, the file sink's pending part files and - because PyFlink drains the
async operator before it acknowledges a barrier - every record in flight are covered by the same checkpoint.
A job that dies is restored from its last checkpoint (--restore): files written after it were never committed
and are discarded, and the records after it are read and enriched again (the gateway sees those twice, the
outputs do not). Kafka output is at-least-once (DeliveryGuarantee.AT_LEAST_ONCE: no transactional producer).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from pyflink.common import Configuration, Duration, Encoder, Time, Types, WatermarkStrategy
from pyflink.datastream import AsyncDataStream, OutputTag, RuntimeContext, StreamExecutionEnvironment
from pyflink.datastream.connectors.file_system import (
    FileSink,
    FileSource,
    OutputFileConfig,
    RollingPolicy,
    StreamFormat,
)
from pyflink.datastream.functions import AsyncFunction, ProcessFunction

from serve_app.bench.stats import percentile
from serve_app.stream.batching import Stats
from serve_app.stream.options import parse
from serve_app.stream.records import Record, Schema, dumps, is_dead_letter, parse_line
from serve_app.stream.retry import RetryPolicy

REPO = Path(__file__).resolve().parents[2]
DEAD = OutputTag("dead-letters", Types.STRING())
METRIC_GROUP = "gateway_stream"


class ParseRecords(ProcessFunction):
    """Lines -> {"key", "text"} JSON for the enrichment; anything else -> the dead-letter side output."""

    def __init__(self, schema: Schema):
        self.schema = schema
        self.bad = None

    def open(self, runtime_context: RuntimeContext):
        self.bad = runtime_context.get_metrics_group().add_group(METRIC_GROUP).counter("bad_records")

    def process_element(self, value, ctx):
        parsed = parse_line(value, self.schema)
        if isinstance(parsed, Record):
            yield dumps({"key": parsed.key, "text": parsed.text})
        else:
            self.bad.inc()
            yield DEAD, dumps(parsed)


def bind_gauges(stats: Stats, group) -> Stats:
    """Expose the enricher's counts as Flink gauges. Gauges, not counters: the enricher runs on the async
    operator's event-loop thread, where PyFlink's (Beam's) counters have no metrics container and drop updates;
    a gauge is read by the operator thread when metrics are reported."""
    for name in ("records_in", "records_out", "dead_letters", "retries", "requests", "in_flight"):
        group.gauge(name, lambda name=name: getattr(stats, name))
    return stats


class Enrich(AsyncFunction):
    """One record in, one output or dead letter out (JSON). The enricher is built per worker, in open()."""

    def __init__(self, settings: dict):
        self.settings = settings
        self.enricher = None
        self._started = None
        self._subtask = 0

    def open(self, runtime_context: RuntimeContext):
        self._subtask = runtime_context.get_index_of_this_subtask()
        stats = bind_gauges(Stats(), runtime_context.get_metrics_group().add_group(METRIC_GROUP))
        s = self.settings
        if s["edge_bundle"]:
            from serve_app.stream.edge import EdgeEnricher

            self.enricher = EdgeEnricher(Path(s["edge_bundle"]), batch_size=s["batch_size"] or 16, stats=stats)
        else:
            from serve_app.stream.enrich import GatewayEnricher

            self.enricher = GatewayEnricher(s["gateway"], target=s["target"], model=s["model"],
                                            batch_size=s["batch_size"], max_requests=s["max_requests"],
                                            deadline_s=s["deadline"], retry=RetryPolicy(), token=s["token"],
                                            stats=stats)

    async def async_invoke(self, value: str):
        if self._started is None:  # the first call runs on the operator's event loop: start the client there
            self._started = asyncio.ensure_future(self.enricher.start())
        await asyncio.shield(self._started)
        data = json.loads(value)
        return [dumps(await self.enricher.enrich(Record(data["key"], data["text"])))]

    def close(self):
        """The operator's final counts, one JSON file per subtask and run (OUT/metrics/), and the job log."""
        if self.enricher is None:
            return
        st = self.enricher.stats
        summary = {k: getattr(st, k) for k in ("records_in", "records_out", "dead_letters", "retries",
                                                "requests", "first_in_unix", "last_out_unix")}
        summary["latency_ms_p50"] = percentile(st.latencies_ms, 50)
        summary["latency_ms_p99"] = percentile(st.latencies_ms, 99)
        folder = Path(self.settings["out"]) / "metrics"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"enrich-{self._subtask}-{os.getpid()}.json").write_text(json.dumps(summary) + "\n")
        print(f"gateway_stream summary {json.dumps(summary)}", file=sys.stderr, flush=True)

    def timeout(self, value: str):
        # The enricher dead-letters at its own deadline first; this is the safety net behind it.
        data = json.loads(value)
        return [dumps({"key": data["key"], "reason": "deadline_exceeded", "error": "Flink async timeout"})]


class SplitDeadLetters(ProcessFunction):
    """Outputs to the main stream, dead letters to the side output; end-to-end latency into a distribution."""

    def __init__(self):
        self.latency = None

    def open(self, runtime_context: RuntimeContext):
        self.latency = runtime_context.get_metrics_group().add_group(METRIC_GROUP).distribution("latency_ms")

    def process_element(self, value, ctx):
        record = json.loads(value)
        if is_dead_letter(record):
            yield DEAD, value
        else:
            self.latency.update(int(record["latency_ms"]))
            yield value


def flink_config(args) -> Configuration:
    config = Configuration()
    where = args.checkpoint_dir or str(args.out / "checkpoints")
    checkpoints = where if "://" in where else Path(where).resolve().as_uri()
    settings = {
        "execution.checkpointing.interval": f"{int(args.checkpoint_interval * 1000)} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": checkpoints,
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "3",
        "restart-strategy.type": "fixed-delay",  # a failed task restarts from the last checkpoint, in-process
        "restart-strategy.fixed-delay.attempts": "3",
        "restart-strategy.fixed-delay.delay": "2 s",
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        # A checkpoint barrier waits for the Python bundle in front of it to drain. With PyFlink's default
        # bundle (100,000 records) the source hands the whole input over at once and the first checkpoint only
        # completes after it is all enriched; a bundle of `capacity` records keeps checkpoints mid-stream.
        "python.fn-execution.bundle.size": str(args.capacity),
        "python.fn-execution.bundle.time": "1000",
        "metrics.reporter.slf4j.factory.class": "org.apache.flink.metrics.slf4j.Slf4jReporterFactory",
        "metrics.reporter.slf4j.interval": f"{max(1, int(args.metrics_interval))} s",
        "parallelism.default": str(args.parallelism),
    }
    if args.restore:
        settings["execution.state-recovery.path"] = args.restore.resolve().as_uri()
    if args.kafka_jar:
        settings["pipeline.jars"] = args.kafka_jar.resolve().as_uri()
    for key, value in settings.items():
        config.set_string(key, value)
    return config


def file_sink(folder: Path, prefix: str) -> FileSink:
    # A part file per checkpoint: the checkpoint commits it (renames it visible); a restore discards the rest.
    # (A size/time rolling policy would keep row-format files in progress across checkpoints: nothing visible
    # until it rolled.)
    return (FileSink.for_row_format(folder.resolve().as_uri(), Encoder.simple_string_encoder("UTF-8"))
            .with_rolling_policy(RollingPolicy.on_checkpoint_rolling_policy())
            .with_output_file_config(OutputFileConfig.builder().with_part_prefix(prefix)
                                     .with_part_suffix(".jsonl").build())
            .build())


def source_stream(env, args):
    if args.kafka_bootstrap:
        from pyflink.common.serialization import SimpleStringSchema
        from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer, KafkaSource

        source = (KafkaSource.builder().set_bootstrap_servers(args.kafka_bootstrap).set_topics(args.kafka_topic)
                  .set_group_id(args.kafka_group).set_starting_offsets(KafkaOffsetsInitializer.earliest())
                  .set_value_only_deserializer(SimpleStringSchema()).build())
        return env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka")
    builder = FileSource.for_record_stream_format(StreamFormat.text_line_format(), str(args.source.resolve()))
    if args.watch:
        builder = builder.monitor_continuously(Duration.of_millis(int(args.watch * 1000)))
    return env.from_source(builder.build(), WatermarkStrategy.no_watermarks(), "jsonl-files")


def kafka_sink(args):
    from pyflink.common.serialization import SimpleStringSchema
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink

    return (KafkaSink.builder().set_bootstrap_servers(args.kafka_bootstrap)
            .set_record_serializer(KafkaRecordSerializationSchema.builder().set_topic(args.kafka_sink_topic)
                                   .set_value_serialization_schema(SimpleStringSchema()).build())
            .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE).build())


def build(env, args) -> None:
    schema = Schema(text_field=args.text_field, key_field=args.key_field)
    lines = source_stream(env, args)
    parsed = lines.process(ParseRecords(schema), output_type=Types.STRING()).name("parse")
    settings = {"out": str(args.out.resolve()), "edge_bundle": str(args.edge_bundle.resolve()) if args.edge_bundle else None,
                "gateway": args.gateway, "target": args.target, "model": args.model,
                "batch_size": args.batch_size, "max_requests": args.max_requests, "deadline": args.deadline,
                "token": args.token or os.environ.get("GATEWAY_TOKEN")}
    # Flink's own timeout sits behind the enricher's deadline, which dead-letters the record first.
    enriched = AsyncDataStream.unordered_wait(parsed, Enrich(settings), Time.seconds(int(args.deadline) + 30),
                                              capacity=args.capacity, output_type=Types.STRING()).name("enrich")
    results = enriched.process(SplitDeadLetters(), output_type=Types.STRING()).name("split")
    dead = parsed.get_side_output(DEAD).union(results.get_side_output(DEAD))
    results.sink_to(file_sink(args.out / "results", "result")).name("results")
    dead.sink_to(file_sink(args.out / "dead-letters", "dead")).name("dead-letters")
    if args.kafka_sink_topic:
        results.sink_to(kafka_sink(args)).name("kafka-results")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv, prog="python -m serve_app.stream.job")
    args.out.mkdir(parents=True, exist_ok=True)
    # The Python workers are started by Flink's JVM: they find serve_app through PYTHONPATH.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("FLINK_LOG_DIR", str((args.out / "log").resolve()))
    env = StreamExecutionEnvironment.get_execution_environment(flink_config(args))
    build(env, args)
    mode = "edge bundle " + str(args.edge_bundle) if args.edge_bundle else f"gateway {args.gateway}"
    print(f"stream job: {args.source or args.kafka_topic} -> {args.out} via {mode}", flush=True)
    result = env.execute("gateway-stream")
    print(f"stream job finished: {result.get_job_id()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
