"""The Kubernetes manifests, checked offline: each overlay renders with kustomize (`kubectl kustomize`), core kinds
validate strictly against Kubernetes' schemas (kubernetes-validate), custom resources against their CRDs
(../shared/schemas/crds)."""

from __future__ import annotations

import json

import pytest
from support.k8s import CUSTOM, K8S_VERSION, NAMESPACE, OVERLAYS, crd_errors, one, pod_templates, render


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_resource_into_the_namespace(overlay):
    docs = render(overlay)
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert kinds == sorted([
        "Namespace/inference-gateway", "RayService/inference-gateway", "Service/gateway-metrics",
        "PodDisruptionBudget/gateway-workers", "ConfigMap/gateway-env", "ConfigMap/inference-gateway-dashboard",
        "ServiceMonitor/inference-gateway", "PodMonitor/inference-gateway-ray-head",
        "PrometheusRule/inference-gateway", "ConfigMap/gateway-redis-config", "Service/gateway-redis",
        "Deployment/gateway-redis", "PersistentVolumeClaim/gateway-redis-data"])
    assert all(d["metadata"].get("namespace") == NAMESPACE for d in docs if d["kind"] != "Namespace")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_kinds_validate_strictly(overlay):
    import kubernetes_validate

    core = [d for d in render(overlay) if d["kind"] not in CUSTOM and d["kind"] != "PrometheusRule"]
    assert {d["kind"] for d in core} == {"Namespace", "Service", "PodDisruptionBudget", "ConfigMap", "Deployment",
                                         "PersistentVolumeClaim"}
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
