"""A real Prometheus (Debian's `prometheus`, installed by .ci/run) scrapes Ray's exporter and the sidecar on
loopback while known traffic, errors included, goes through the gateway."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import httpx
import pytest
import yaml
from support.serve import REPO, SERVE_ADDRESSES, deployed, free_port

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings

MONITORING = REPO / "k8s" / "monitoring"
# Late in a full test session Ray's exporter holds every series of every application deployed so far, and a
# scrape of it on 2 busy cores took over 1 s: with a 1 s interval (and so a 1 s timeout) every scrape failed
# and the test saw no series at all (CI, 0 of 20 after 90 s). 3 s leaves room and still ends quickly.
SCRAPE_S = 3
PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus binary not installed "
                                "(apt-get install prometheus; .ci/run does)")


def wait_http(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def stack(serve_session, tiny_models, tmp_path_factory):
    work = tmp_path_factory.mktemp("prometheus")
    sidecar_port, prom_port = free_port(), free_port()
    sidecar = subprocess.Popen([sys.executable, "-m", "serve_app.ops.sidecar", "--port", str(sidecar_port),
                                "--gateway", serve_session])
    metrics_target = SERVE_ADDRESSES["metrics"].removeprefix("http://").removesuffix("/metrics")
    (work / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": f"{SCRAPE_S}s", "scrape_timeout": f"{SCRAPE_S}s",
                   "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": [str(MONITORING / "alert-rules.yaml")],
        "scrape_configs": [
            {"job_name": "gateway", "static_configs": [{"targets": [metrics_target]}]},
            {"job_name": "gateway-sidecar", "static_configs": [{"targets": [f"127.0.0.1:{sidecar_port}"]}]},
        ],
    }))
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = parse_config({
        "models": [{"name": "prom-clf", "task": "classification", "source": "tiny-classifier", "max_length": 32,
                    "resources": {"num_cpus": 0.1, "num_gpus": 0}},
                   {"name": "prom-echo", "task": "identity", "resources": {"num_cpus": 0.05, "num_gpus": 0}},
                   {"name": "prom-sum", "task": "summarization", "source": "tiny-chatty", "max_length": 32,
                    "resources": {"num_cpus": 0.1, "num_gpus": 0},
                    "generation": {"max_new_tokens": 4, "max_new_tokens_limit": 8}}],
        "pipelines": [{"name": "prom-pipe", "graph": {"type": "fanout", "branches": {
            "a": {"type": "model", "model": "prom-clf"}, "b": {"type": "model", "model": "prom-echo"}}}}],
    }, settings=GatewaySettings(models_dir=tiny_models))
    try:
        wait_http(f"http://127.0.0.1:{prom_port}/-/ready")
        with deployed(config), httpx.Client(base_url=serve_session, timeout=60) as client:
            yield client, f"http://127.0.0.1:{prom_port}"
    finally:
        prom.terminate()
        sidecar.terminate()
        prom.wait(10)
        sidecar.wait(10)


def query(prom: str, expr: str) -> list:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert r["status"] == "success", r
    return r["data"]["result"]


def value(prom: str, expr: str) -> float:
    result = query(prom, expr)
    return float(result[0]["value"][1]) if result else 0.0


def targets_health(prom: str) -> str:
    """What Prometheus says of each scrape target: shown when a series never arrives."""
    active = httpx.get(f"{prom}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    return "; ".join(f"{t['labels'].get('job')}: {t['health']} ({t.get('lastScrapeDuration')} s) "
                     f"{t.get('lastError', '')}" for t in active)


def wait_value(prom: str, expr: str, expected: float, seconds: float = 90) -> float:
    deadline = time.monotonic() + seconds
    while (got := value(prom, expr)) != expected and time.monotonic() < deadline:
        time.sleep(1)
    if got != expected:
        print(f"{expr} = {got}, expected {expected}; targets: {targets_health(prom)}")
    return got


def test_prometheus_counts_match_traffic_and_every_panel_has_data(stack):
    client, prom = stack
    ok, bad, piped = 20, 5, 4
    for _ in range(ok):
        assert client.post("/v1/classify", json={"texts": ["a"], "model": "prom-clf"}).status_code == 200
    for _ in range(bad):  # resolves the model, then fails on a version that is not loaded
        assert client.post("/v1/classify", json={"texts": ["a"], "model": "prom-clf@99"}).status_code == 404
    for _ in range(piped):
        assert client.post("/v1/pipelines/prom-pipe", json={"texts": ["a"]}).status_code == 200
    generated = sum(client.post("/v1/summarize", json={"texts": [f"article {i}"], "model": "prom-sum"}).json()
                    ["results"][0]["generated_tokens"] for i in range(3))

    assert wait_value(prom, 'sum(ray_gateway_requests_total{model="prom-clf", pipeline=""})', ok) == ok
    assert wait_value(prom, 'sum(ray_gateway_requests_total{model="prom-clf", pipeline="prom-pipe"})', piped) == piped
    assert wait_value(prom, 'sum(ray_gateway_errors_total{model="prom-clf", kind="model_not_found"})', bad) == bad
    assert wait_value(prom, 'sum(ray_gateway_request_duration_seconds_count{model="prom-clf"})', ok) == ok
    assert wait_value(prom, 'sum(ray_gateway_generation_tokens_total{model="prom-sum"})', generated) == generated
    assert value(prom, 'up{job="gateway-sidecar"}') == 1 and value(prom, "gateway_probe_success") == 1

    # The sidecar rescans the process table every 15 s: replicas deployed after its last scan show up at the
    # next one (seen empty when the previous module's replicas were still stopping at the first scan).
    assert wait_value(prom, 'count(gateway_replica_resident_memory_bytes{application="prom-clf--folder"}) > bool 0',
                      1) == 1
    time.sleep(2 * SCRAPE_S)  # let rate() windows hold at least two samples of every series
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    empty = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            if not query(prom, target["expr"]):
                empty.append(f"{panel['title']}: {target['expr']}")
    # GPU panels included: without a GPU they show one series {gpu="none"} of 0, not an empty panel.
    assert not empty, "panels without data:\n" + "\n".join(empty)
    if value(prom, "gateway_gpu_count") == 0:
        gpu_panel = next(p for p in dashboard["panels"] if p["title"] == "GPU utilization")
        assert query(prom, gpu_panel["targets"][0]["expr"])[0]["metric"]["gpu"] == "none"


def test_alert_rules_pass_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (it comes with Debian's prometheus package)")
    out = subprocess.run([promtool, "check", "rules", str(MONITORING / "alert-rules.yaml")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 6 rules found" in out.stdout


def test_the_shipped_dashboard_is_the_generated_one():
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("make_dashboard", REPO / "scripts" / "make_dashboard.py")
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    shipped = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert shipped == module.dashboard(), "run scripts/make_dashboard.py"
