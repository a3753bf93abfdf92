"""`gateway` command: run the gateway, prepare models, manage the registry, check a config.

    gateway run [--config PATH] [--address A]  start Ray (or join the cluster at A) and the gateway; Ctrl-C stops it
    gateway node [ray start flags]    start a Ray node with the gateway's environment (serve_app/ops/cluster.py)
    gateway prepare [--force] [NAME]  build the default models and register them (alias `stable`)
    gateway models list|show|register|alias|unalias|remove|pull|gc   the model registry
    gateway check-config [PATH]       validate a config and print what it would serve
    gateway optimize SELECTOR [...]   prune/quantize/export a version, evaluate, gate, register it
    gateway optimize-report           every variant of both default models: table, JSON, plot
    gateway edge-bundle SELECTOR DIR  an ONNX classifier with a runner that needs only onnxruntime
    gateway stream --source F --out D every record of a stream classified by a PyFlink job (--help)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from serve_app.config import ConfigError, load_config
from serve_app.config.serve_env import use_fast_path
from serve_app.config.settings import GatewaySettings
from serve_app.errors import GatewayError
from serve_app.ops.cluster import token_auth_as_the_head
from serve_app.optimize.cli import add_parsers as add_optimize_parsers
from serve_app.registry.cli import add_parser as add_registry_parser
from serve_app.tasks import TASKS
from serve_app.tracing import ray_tracing_env


def _cmd_registry(args: argparse.Namespace, settings: GatewaySettings) -> int:
    from serve_app.plan import open_registry

    return args.run(open_registry(load_config(args.config, settings)), args)


def _cmd_optimizer(args: argparse.Namespace, settings: GatewaySettings) -> int:
    from serve_app.plan import open_registry

    return args.handler(open_registry(load_config(args.config, settings)), args)


def _cmd_prepare(args: argparse.Namespace, settings: GatewaySettings) -> int:
    from serve_app.builders.prepare import (
        BUILDERS,
        choose_summarizer,
        prepare_models,
        register_defaults,
        register_fast_classifier,
    )
    from serve_app.plan import open_registry

    unknown = set(args.names) - set(BUILDERS)
    if unknown:
        print(f"unknown model(s) {sorted(unknown)}; choose from {sorted(BUILDERS)}", file=sys.stderr)
        return 2
    reports = prepare_models(settings.models_dir, only=args.names or None, force=args.force)
    registry = open_registry(load_config(args.config, settings))
    register_defaults(registry, settings.models_dir, reports)
    if "summarizer" in reports:
        choose_summarizer(registry, settings.models_dir)
    if "classifier" not in reports:
        return 0
    print(f"classifier held-out accuracy: {reports['classifier']['held_out_accuracy']:.4f}")
    if register_fast_classifier(registry) != 0:
        print("classifier@fast was not registered; configs/gateway.yaml names it as a selection variant (drop "
              "`selection:` there, or register a variant under that alias)", file=sys.stderr)
        return 1
    return 0


def _cmd_check(args: argparse.Namespace, settings: GatewaySettings) -> int:
    from serve_app.plan import plan_versions

    config = load_config(args.config, settings)
    missing = _missing_folders(config)
    for m in config.models:
        where = config.source_of(m) or f"{config.registry_uri()} {m.registry_name}@" + ",".join(m.selectors)
        print(f"{m.name:<16} {m.task:<15} {m.runtime.value:<6} {where}")
    if missing:
        print("MISSING (run `make models`):\n  " + "\n  ".join(missing))
        return 1
    for p in plan_versions(config):
        print(f"  serves {p.model}@{p.label} (weight {p.weight:g}) as application {p.app_name}")
    return 0


def _missing_folders(config) -> list[str]:
    return [f"{m.name}: {config.source_of(m)}" for m in config.models
            if m.source is not None and not config.source_of(m).is_dir()]


def _endpoints(config, settings: GatewaySettings, base: str, sidecar: bool) -> list[str]:
    """What a user can call once the gateway is up: one line per endpoint."""
    routes = [f"POST {base}{t.route}" for t in TASKS.values() if t.route]
    lines = [*routes, f"GET  {base}/v1/models", f"POST {base}/v1/pipelines/<name>",
             f"OIP  {base}/v2/models/<name>/infer (tritonclient.http)", f"GET  {base}/healthz   GET {base}/readyz",
             f"METRICS http://{config.server.host}:{settings.metrics_port}/metrics "
             "(Prometheus text; the gateway's series are ray_gateway_*)"]
    if sidecar:
        lines.append(f"METRICS http://{config.server.host}:{settings.sidecar_port}/metrics "
                     "(sidecar: host, replica, GPU, probe)")
    if config.server.grpc_port:
        lines.append(f"gRPC {config.server.host}:{config.server.grpc_port} inference.GRPCInferenceService "
                     "(tritonclient.grpc)")
    return lines


def _init_ray(address: str, settings: GatewaySettings):
    """Start a Ray of our own ("local") or join a running cluster, and return the ray module."""
    if address != "local":  # Ray reads its authentication mode when it is imported
        token_auth_as_the_head(os.environ)
    import ray

    if address == "local":
        ray.init(address=address, include_dashboard=False, logging_level="warning",
                 _metrics_export_port=settings.metrics_port)
    else:
        ray.init(address=address, logging_level="warning")
    return ray


def _cmd_run(args: argparse.Namespace, settings: GatewaySettings) -> int:
    from deployments.assemble import deploy, start_serve
    from serve_app.plan import plan_versions

    config = load_config(args.config, settings)
    missing = _missing_folders(config)
    if missing:
        print("model folders missing (fix: run `make models`):\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    plan_versions(config)  # fail fast, before Ray starts, on a version the registry cannot resolve

    # before Ray is imported: its workers (the proxy too) inherit the env
    use_fast_path(http_front=config.server.http_front, edge=config.server.http_edge)
    ray_tracing_env(config.server.tracing)  # traces across processes, where spans are exported
    address = args.address or settings.ray_address
    own_ray = address == "local"  # a Ray started here; else a cluster that outlives this command
    started = time.monotonic()
    ray = _init_ray(address, settings)
    base = f"http://{config.server.host}:{config.server.http_port}"
    sidecar = None
    stop = threading.Event()
    try:
        if settings.sidecar_port:
            sidecar = subprocess.Popen([sys.executable, "-m", "serve_app.ops.sidecar", "--port",
                                        str(settings.sidecar_port), "--host", config.server.host, "--gateway", base])
        start_serve(config)
        gpus = ray.cluster_resources().get("GPU", 0.0)
        deploy(config, gpus)
        where = f"{gpus:g} GPU(s)" if gpus else "CPU only"
        nodes = sum(n["Alive"] for n in ray.nodes())
        print(f"\ngateway ready in {time.monotonic() - started:.1f} s ({where}, {nodes} Ray node(s))")
        for line in _endpoints(config, settings, base, sidecar is not None):
            print("  " + line)
        print("Ctrl-C stops the gateway.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()  # KeyboardInterrupt (Ctrl-C) or SIGTERM ends the wait
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping gateway...", flush=True)
        if sidecar:
            sidecar.terminate()
        _stop(config, own_ray)
    return 0


def _stop(config, own_ray: bool) -> None:
    import ray
    from ray import serve

    from deployments.assemble import undeploy

    try:
        if own_ray:
            serve.shutdown()
        else:
            undeploy(config)
    finally:
        ray.shutdown()


def _cmd_node(args: argparse.Namespace, settings: GatewaySettings) -> int:
    from serve_app.ops.cluster import ray_start

    return ray_start(load_config(args.config, settings), args.ray_args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["node"]:  # every other flag is `ray start`'s
        from serve_app.ops import cluster

        node = argparse.ArgumentParser(prog="gateway node", description=cluster.__doc__,
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
        node.add_argument("--config", type=Path, default=None, help="gateway YAML (default: GATEWAY_CONFIG)")
        args, ray_args = node.parse_known_args(argv[1:])
        args.ray_args = ray_args
        return _cmd_node(args, GatewaySettings())
    if argv[:1] == ["stream"]:  # its own options, parsed by the job it launches (serve_app/stream/options.py)
        from serve_app.stream.cli import main as stream_main

        return stream_main(argv[1:])
    parser = argparse.ArgumentParser(prog="gateway", description="Multi-model inference gateway on Ray Serve")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start Ray and the gateway")
    run.add_argument("--config", type=Path, default=None, help="gateway YAML (default: GATEWAY_CONFIG)")
    run.add_argument("--address", default=None,
                     help="deploy onto the Ray cluster at this address (default: GATEWAY_RAY_ADDRESS, else a new Ray)")
    prepare = sub.add_parser("prepare", help="build the default models if missing and register them")
    prepare.add_argument("names", nargs="*", metavar="NAME", help="classifier and/or summarizer (default: both)")
    prepare.add_argument("--force", action="store_true", help="rebuild even if present")
    check = sub.add_parser("check-config", help="validate a gateway config")
    check.add_argument("config", type=Path, nargs="?", default=None)
    sub.add_parser("stream", help="run the PyFlink stream job (gateway stream --help)", add_help=False)
    sub.add_parser("node", help="start a Ray node with the gateway's environment (`ray start` flags)", add_help=False)
    registry = add_registry_parser(sub)
    add_optimize_parsers(sub)
    for p in (prepare, registry):  # both need the config for the registry's location
        p.add_argument("--config", type=Path, default=None, help="gateway YAML (default: GATEWAY_CONFIG)")
    args = parser.parse_args(argv)
    settings = GatewaySettings()
    commands = {"run": _cmd_run, "prepare": _cmd_prepare, "check-config": _cmd_check, "models": _cmd_registry,
                "optimize": _cmd_optimizer, "optimize-report": _cmd_optimizer, "edge-bundle": _cmd_optimizer}
    try:
        return commands[args.command](args, settings)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    except GatewayError as err:  # registry and model errors carry a message written for people
        print(f"error: {err.message}", file=sys.stderr)
        if args.command in ("run", "check-config"):
            print("(`make models` registers what configs/gateway.yaml serves: classifier@stable, classifier@fast, "
                  "summarizer@stable)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
