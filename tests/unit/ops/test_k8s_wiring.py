"""The Kubernetes manifests refer to each other correctly: Services reach the right pods and ports, monitors
select what serves metrics, alert rules match the scrape jobs, config and secret references resolve."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml
from support.k8s import K8S, OVERLAYS, REPO, container_ports, one, pod_templates, render, selects, serve_config


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_reach_the_right_pods_and_their_ports_exist_there(overlay):
    docs = render(overlay)
    rayservice = one(docs, "RayService")
    templates = pod_templates(rayservice)
    workers = {g for g in templates if g != "head"}
    # The client Service is KubeRay's (serveService): KubeRay sets its selector to the serving cluster's pods
    # with a healthy proxy, workers only here; a selector of ours would be overwritten, or, worse, kept.
    serving = rayservice["spec"]["serveService"]
    assert "selector" not in serving["spec"] and rayservice["spec"]["excludeHeadPodFromServeSvc"] is True
    for group in workers:
        ports = container_ports(templates[group])
        for port in serving["spec"]["ports"]:
            assert port["targetPort"] in ports, f"gateway:{port['name']} has no container port in {group}"
    metrics = one(docs, "Service", "gateway-metrics")
    selected = {g for g, t in templates.items() if selects(metrics["spec"]["selector"], t["metadata"]["labels"])}
    assert selected == workers | {"head"}, f"gateway-metrics selects {selected}"
    for group in selected:
        for port in metrics["spec"]["ports"]:
            assert port["targetPort"] in container_ports(templates[group]), f"{port['name']} missing in {group}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serve_ports_agree_across_config_containers_and_service(overlay):
    docs = render(overlay)
    config = serve_config(docs)
    rayservice = one(docs, "RayService")
    svc = {p["name"]: p for p in rayservice["spec"]["serveService"]["spec"]["ports"]}
    assert svc["serve"]["port"] == config["http_options"]["port"] == 8000
    assert svc["grpc"]["port"] == config["grpc_options"]["port"] == 9000
    for group, template in pod_templates(rayservice).items():
        ports = container_ports(template)
        assert ports["serve"] == config["http_options"]["port"], group
        assert ports["grpc"] == config["grpc_options"]["port"], group


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ray_metrics_port_is_the_one_declared_and_scraped(overlay):
    docs = render(overlay)
    cluster = one(docs, "RayService")["spec"]["rayClusterConfig"]
    groups = [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]
    metrics_svc = {p["name"]: p for p in one(docs, "Service", "gateway-metrics")["spec"]["ports"]}
    for name, group in groups:
        port = int(group["rayStartParams"]["metrics-export-port"])
        assert container_ports(group["template"])["metrics"] == port == metrics_svc["ray-metrics"]["port"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_monitors_select_the_metrics_service_and_the_head(overlay):
    docs = render(overlay)
    svc = one(docs, "Service", "gateway-metrics")
    monitor = one(docs, "ServiceMonitor")
    assert selects(monitor["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
    serving = one(docs, "RayService")["spec"]["serveService"]
    assert not selects(monitor["spec"]["selector"]["matchLabels"], serving["metadata"]["labels"])
    svc_ports = {p["name"] for p in svc["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == svc_ports
    head = pod_templates(one(docs, "RayService"))["head"]
    pod_monitor = one(docs, "PodMonitor")
    assert selects(pod_monitor["spec"]["selector"]["matchLabels"], head["metadata"]["labels"])
    for endpoint in pod_monitor["spec"]["podMetricsEndpoints"]:
        assert endpoint["port"] in container_ports(head)


def test_alert_rules_jobs_are_the_scrape_jobs_and_the_rule_is_the_shipped_file():
    docs = render("gpu")
    jobs = {r["replacement"] for e in one(docs, "ServiceMonitor")["spec"]["endpoints"] for r in e["relabelings"]
            if r.get("targetLabel") == "job"}
    assert jobs == {"gateway", "gateway-sidecar"}  # the job names of the README's local scrape config
    shipped = yaml.safe_load((K8S / "monitoring" / "alert-rules.yaml").read_text())
    rule = one(docs, "PrometheusRule")
    assert rule["spec"]["groups"] == shipped["groups"]
    exprs = " ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    assert set(re.findall(r'job="([^"]+)"', exprs)) <= jobs


def test_prometheus_rule_passes_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool absent (.ci/run installs Debian's prometheus)")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": one(render("gpu"), "PrometheusRule")["spec"]["groups"]}))
    out = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dashboard_configmap_holds_the_shipped_dashboard(overlay):
    cm = one(render(overlay), "ConfigMap", "inference-gateway-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"  # what Grafana's dashboard sidecar looks for
    shipped = json.loads((K8S / "monitoring" / "grafana-dashboard.json").read_text())
    assert json.loads(cm["data"]["grafana-dashboard.json"]) == shipped


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pdb_covers_the_serving_workers_only(overlay):
    docs = render(overlay)
    pdb = one(docs, "PodDisruptionBudget")
    templates = pod_templates(one(docs, "RayService"))
    selector = pdb["spec"]["selector"]["matchLabels"]
    covered = {g for g, t in templates.items() if selects(selector, t["metadata"]["labels"])}
    assert covered == set(templates) - {"head"}
    assert isinstance(pdb["spec"]["minAvailable"], int)  # a percentage or maxUnavailable needs a scale subresource


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_secret_references_resolve(overlay):
    docs = render(overlay)
    configmaps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    env = one(docs, "ConfigMap", "gateway-env")["data"]
    assert env["GATEWAY_REGISTRY_URI"].startswith("s3://")
    secrets = set()
    for template in pod_templates(one(docs, "RayService")).values():
        for c in template["spec"]["containers"]:
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in configmaps
                else:
                    secrets.add(ref["secretRef"]["name"])
            secrets |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                        if "secretKeyRef" in e.get("valueFrom", {})}
    # GCS fault tolerance: the RayService and the Redis it uses name one password Secret
    gcs = one(docs, "RayService")["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]
    redis = one(docs, "Deployment", "gateway-redis")["spec"]["template"]["spec"]["containers"][0]
    assert gcs["redisAddress"].split(":")[0] == one(docs, "Service", "gateway-redis")["metadata"]["name"]
    redis_secrets = {gcs["redisPassword"]["valueFrom"]["secretKeyRef"]["name"],
                     *(e["valueFrom"]["secretKeyRef"]["name"] for e in redis["env"])}
    assert redis_secrets == {"gateway-redis"}
    # Secrets are never shipped: the README tells how to create exactly these.
    assert secrets | redis_secrets == {"gateway-s3", "gateway-admin", "gateway-redis"}
    readme = (REPO / "README.md").read_text()
    assert all(f"create secret generic {name}" in readme for name in secrets | redis_secrets)
