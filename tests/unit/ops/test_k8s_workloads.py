"""The pods the Kubernetes manifests run: probes, resources and the overlay's image in every container, model
replicas placed on nodes they fit, and Ray and Python versions that agree with pyproject and the Dockerfile."""

from __future__ import annotations

import json
import re
import sys
import tomllib

import pytest
import yaml
from support.k8s import K8S, OVERLAYS, REPO, one, pod_templates, render, serve_config

from serve_app.config import parse_config
from serve_app.plan import deployment_options


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
