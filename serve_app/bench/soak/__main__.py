"""Soak test: steady load at ~70% of measured capacity, with known inputs and the answers they must get.

    python -m serve_app.bench.soak            # 10 minutes (SOAK_SECONDS overrides), real classifier if prepared
    python -m serve_app.bench.soak --short    # 30 s on an identity model (what CI runs, via tests/integration)
    python -m serve_app.bench.soak --url http://127.0.0.1:8000 --model classifier   # a gateway already running
    python -m serve_app.bench.soak --model mixed   # classify, summarize, a pipeline, over HTTP and gRPC together

Steps: record each input's reference answer; measure capacity with a closed loop; send an open-loop stream at
`--load` x capacity, checking every answer against its reference: a warm-up, then RSS of every Ray process,
then the soak's length, then RSS again. The JSON report gives requests, errors, wrong answers,
latency percentiles and RSS before/after (total and per serving process, growth in %). Exit status 1 when
there were errors, wrong answers, or RSS growth of 5% or more (R1 of the reliability issue).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from serve_app.bench.harness import REPO, free_port, local_ray, start_gateway
from serve_app.bench.soak.configs import soak_config
from serve_app.bench.soak.memory import plot_timeline
from serve_app.bench.soak.mixed import MixedTarget
from serve_app.bench.soak.run import RSS_GROWTH_LIMIT_PCT, passed, run_soak
from serve_app.bench.soak.targets import Target
from serve_app.config.serve_env import use_fast_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve_app.bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    parser.add_argument("--short", action="store_true", help="30 s on an identity model (CI)")
    parser.add_argument("--model", choices=["auto", "identity", "classifier", "mixed"], default="auto",
                        help="auto: the prepared classifier when ./models/classifier exists, else identity")
    parser.add_argument("--load", type=float, default=0.7, help="fraction of measured capacity to send")
    parser.add_argument("--url", help="soak a gateway already running here instead of starting one")
    parser.add_argument("--token", default=os.environ.get("GATEWAY_INFERENCE_TOKEN"), help="inference token")
    parser.add_argument("--json-out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.short:
        args.seconds, args.model = min(args.seconds, 30.0), "identity"
    if args.model == "auto":
        args.model = "classifier" if (REPO / "models" / "classifier" / "config.json").is_file() else "identity"
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    name = "soak-echo" if args.model == "identity" else "classifier"
    task = "identity" if args.model == "identity" else "classification"

    if args.model == "mixed":
        name, task = "mixed", "mixed"
    if args.url:
        if args.model == "mixed":
            raise SystemExit("--model mixed starts its own gateway (it needs the gRPC port); drop --url")
        report = run_soak(Target(args.url, name, task, headers), args.seconds, args.load)
    else:
        report = _run_local(args, name, task, headers)
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
        plot_timeline(report["rss_timeline"], args.json_out.with_suffix(".png"),
                      f"RSS during the {args.model} soak ({report['seconds']:.0f} s at {report['target_rps']} req/s)")
    ok = passed(report)
    print("soak:", "PASS" if ok else "FAIL", f"(errors {report['errors']}, wrong {report['wrong_answers']}, "
          f"RSS growth {report['rss_growth_pct']}% < {RSS_GROWTH_LIMIT_PCT}%)", file=sys.stderr)
    return 0 if ok else 1


def _run_local(args, name: str, task: str, headers: dict) -> dict:
    """Start a local Ray and Serve on free ports, deploy the soak config, soak it, and shut down."""
    use_fast_path()  # the mode `make run` uses; before Ray is imported
    import ray

    from serve_app.config import parse_config
    from serve_app.config.settings import GatewaySettings

    port, grpc_port = free_port(), (free_port() if args.model == "mixed" else 0)
    config = parse_config({**soak_config(args.model), "server": {"grpc_port": grpc_port}},
                          settings=GatewaySettings(models_dir=REPO / "models"))
    with local_ray(log_to_driver=False):
        start_gateway(config, port, grpc_port, gpus_in_cluster=ray.cluster_resources().get("GPU", 0))
        base = f"http://127.0.0.1:{port}"
        target = (MixedTarget(base, f"127.0.0.1:{grpc_port}", headers) if args.model == "mixed"
                  else Target(base, name, task, headers))
        return run_soak(target, args.seconds, args.load)


if __name__ == "__main__":
    sys.exit(main())
