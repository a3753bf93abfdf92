"""Plain helpers for tests on a real Ray Serve (fixtures live in tests/conftest.py): free ports, the Serve
addresses of this session, deploying a config for one module, calling a deployment through its handle, and
`gateway_fixture`, the module-scoped `gateway` fixture every integration module builds from its config."""

from __future__ import annotations

import inspect
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
# Filled by the `serve_session` fixture: "grpc" (host:port of the gRPC proxy) and "metrics" (the exporter's URL).
SERVE_ADDRESSES: dict[str, str] = {}
# One series of Prometheus' text format, as Ray's exporter writes it.
SERIES = re.compile(r'^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_HANDLE_LOOP = None


def call_deployment(app: str, deployment: str, method: str, *args, model_id: str = ""):
    """One handle call from the test process (`model_id`: Ray's multiplexed model id). In Ray Serve's
    throughput-optimized mode a handle's router runs on the event loop it was first used on, so every such call
    goes through one loop kept in a thread."""
    import asyncio
    import threading

    from ray import serve

    global _HANDLE_LOOP
    if _HANDLE_LOOP is None:
        _HANDLE_LOOP = asyncio.new_event_loop()
        threading.Thread(target=_HANDLE_LOOP.run_forever, daemon=True, name="test-handles").start()

    async def call():
        handle = serve.get_deployment_handle(deployment, app_name=app)
        if model_id:
            handle = handle.options(multiplexed_model_id=model_id)
        return await getattr(handle, method).remote(*args)

    return asyncio.run_coroutine_threadsafe(call(), _HANDLE_LOOP).result(timeout=60)


def delete_all_apps() -> None:
    from ray import serve

    for name in serve.status().applications:
        serve.delete(name)


@contextmanager
def deployed(config, registry=None, deploy=None):
    """Deploy the gateway and its model versions for one test module; delete every app afterwards.
    `deploy(config)` replaces deployments.assemble.deploy where a module deploys its own way."""
    if deploy is None:
        from deployments.assemble import deploy as serve_deploy

        serve_deploy(config, registry=registry)
    else:
        deploy(config)
    try:
        yield
    finally:
        delete_all_apps()


def gateway_fixture(config: Callable[..., object], *, timeout: float | None = 60, headers: dict | None = None,
                    deploy: Callable | None = None, ready: Callable | None = None):
    """The module-scoped `gateway` fixture of an integration module, built from its config:

        def config(tiny_models):  # parameters name the fixtures it needs
            return parse_config({...}, settings=GatewaySettings(models_dir=tiny_models))

        gateway = gateway_fixture(config)

    It deploys the config for the module (through `deploy(config)` if given, else deployments.assemble.deploy) and
    yields an httpx client on the Serve address (`timeout`, `headers`), or with timeout=None the address itself;
    `ready(gateway)` runs once before the module's first test (a warm-up call, a timestamp). Every app is deleted
    afterwards."""
    needs = list(inspect.signature(config).parameters)

    @pytest.fixture(scope="module")
    def gateway(serve_session, request) -> Iterator:
        built = config(*(request.getfixturevalue(name) for name in needs))
        with deployed(built, deploy=deploy):
            if timeout is None:
                yield _readied(serve_session, ready)
                return
            import httpx

            with httpx.Client(base_url=serve_session, timeout=timeout, headers=headers) as client:
                yield _readied(client, ready)

    return gateway


def _readied(gateway, ready):
    if ready is not None:
        ready(gateway)
    return gateway


def scrape_sum(name: str, **labels) -> float:
    """Sum of a series over every worker that reports it (Ray labels each process separately)."""
    total = 0.0
    for line in httpx.get(SERVE_ADDRESSES["metrics"], timeout=10).text.splitlines():
        m = SERIES.match(line)
        if not m or m["name"] != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m["value"])
    return total
