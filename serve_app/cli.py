"""`gateway` command: run the gateway, prepare models, check a config.

    gateway run [--config PATH]      start Ray and the gateway; Ctrl-C stops both
    gateway models [--force] [NAME]  build the default models into GATEWAY_MODELS_DIR
    gateway check-config [PATH]      validate a config and print what it would serve
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from serve_app.config import ConfigError, load_config
from serve_app.settings import GatewaySettings


def _cmd_models(args: argparse.Namespace, settings: GatewaySettings) -> int:
    from serve_app.models.prepare import BUILDERS, prepare_models

    unknown = set(args.names) - set(BUILDERS)
    if unknown:
        print(f"unknown model(s) {sorted(unknown)}; choose from {sorted(BUILDERS)}", file=sys.stderr)
        return 2
    reports = prepare_models(settings.models_dir, only=args.names or None, force=args.force)
    if "classifier" in reports:
        print(f"classifier held-out accuracy: {reports['classifier']['held_out_accuracy']:.4f}")
    return 0


def _cmd_check(args: argparse.Namespace, settings: GatewaySettings) -> int:
    config = load_config(args.config, settings)
    for m in config.models:
        src = config.source_of(m)
        state = "found" if src.is_dir() else "MISSING (run `make models`)"
        print(f"{m.name:<16} {m.task.value:<15} {m.runtime.value:<6} {src} [{state}]")
    return 0


def _cmd_run(args: argparse.Namespace, settings: GatewaySettings) -> int:
    config = load_config(args.config, settings)
    missing = [f"{m.name}: {config.source_of(m)}" for m in config.models if not config.source_of(m).is_dir()]
    if missing:
        print("model folders missing (fix: run `make models`):\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2

    import ray
    from ray import serve

    from serve_app.app import build_app

    started = time.monotonic()
    ray.init(address=settings.ray_address, include_dashboard=False, logging_level="warning")
    stop = threading.Event()
    try:
        serve.start(http_options={"host": config.server.host, "port": config.server.http_port})
        gpus = ray.cluster_resources().get("GPU", 0.0)
        serve.run(build_app(config, gpus), name="gateway", route_prefix="/", blocking=False)
        base = f"http://{config.server.host}:{config.server.http_port}"
        where = f"{gpus:g} GPU(s)" if gpus else "CPU only"
        print(f"\ngateway ready in {time.monotonic() - started:.1f} s ({where})")
        for line in (f"POST {base}/v1/classify", f"POST {base}/v1/summarize", f"GET  {base}/v1/models",
                     f"GET  {base}/healthz   GET {base}/readyz"):
            print("  " + line)
        print("Ctrl-C stops the gateway.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()  # KeyboardInterrupt (Ctrl-C) or SIGTERM ends the wait
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping gateway...", flush=True)
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway", description="Multi-model inference gateway on Ray Serve")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start Ray and the gateway")
    run.add_argument("--config", type=Path, default=None, help="gateway YAML (default: GATEWAY_CONFIG)")
    models = sub.add_parser("models", help="build the default models if missing")
    models.add_argument("names", nargs="*", metavar="NAME", help="classifier and/or summarizer (default: both)")
    models.add_argument("--force", action="store_true", help="rebuild even if present")
    check = sub.add_parser("check-config", help="validate a gateway config")
    check.add_argument("config", type=Path, nargs="?", default=None)
    args = parser.parse_args(argv)
    settings = GatewaySettings()
    try:
        return {"run": _cmd_run, "models": _cmd_models, "check-config": _cmd_check}[args.command](args, settings)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
