"""Open Inference Protocol v2 operations over the dataplane (transport-agnostic; REST and gRPC share them)."""

from __future__ import annotations

import asyncio

from serve_app import __version__
from serve_app.config import Task
from serve_app.dataplane import DataPlane
from serve_app.errors import InvalidInput, ModelNotFound, ModelNotReady
from serve_app.pipelines.validate import output_fields
from serve_app.protocols.tensors import TEXT_INPUT, decode_texts, encode_outputs

SERVER_NAME = "inference-gateway"
EXTENSIONS = ["binary_tensor_data", "model_repository", "generate"]

_TASK_OUTPUTS = {
    Task.classification: [("label", "BYTES", [-1]), ("score", "FP32", [-1]), ("probabilities", "FP32", [-1, -1]),
                          ("truncated", "BOOL", [-1]), ("input_tokens", "INT64", [-1])],
    Task.summarization: [("summary", "BYTES", [-1]), ("truncated", "BOOL", [-1]), ("input_tokens", "INT64", [-1]),
                         ("generated_tokens", "INT64", [-1]), ("finish_reason", "BYTES", [-1])],
    Task.identity: [("text", "BYTES", [-1])],
}
_FIELD_TYPES = {"text": ("BYTES", [-1]), "label": ("BYTES", [-1]), "number": ("FP32", [-1]),
                "probabilities": ("FP32", [-1, -1]), "branches": ("BYTES", [-1])}


def server_metadata() -> dict:
    return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}


def _tensor(name: str, datatype: str, shape: list[int]) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape}


async def model_metadata(dp: DataPlane, name: str, version: str | None = None) -> dict:
    inputs = [_tensor(TEXT_INPUT, "BYTES", [-1])]
    model = dp.config.model(name)
    if model is None:
        if dp.config.pipeline(name) is None:
            raise ModelNotFound(f"model '{name}' is not served")
        tasks = {m.name: m.task.value for m in dp.config.models}
        fields = output_fields(dp.config.pipelines, tasks, name)
        outputs = [_tensor(f, *_FIELD_TYPES[t]) for f, t in fields.items()]
        return {"name": name, "versions": [], "platform": "inference-gateway/pipeline",
                "inputs": inputs, "outputs": outputs}
    loaded = sorted(dp.routes[name].versions)
    if version is not None and version not in loaded:
        raise ModelNotFound(f"version {version} of '{name}' is not loaded; loaded: {', '.join(loaded) or 'none'}")
    return {"name": name, "versions": loaded, "platform": f"inference-gateway/{model.runtime.value}",
            "inputs": inputs, "outputs": [_tensor(*o) for o in _TASK_OUTPUTS[model.task]],
            "properties": {"task": model.task.value}}


async def model_ready(dp: DataPlane, name: str, version: str | None = None) -> bool:
    if dp.config.model(name) is None:
        if dp.config.pipeline(name) is None:
            raise ModelNotFound(f"model '{name}' is not served")
        return (await dp.pipeline_status(name))["ready"]
    status = await dp.model_status(name)
    if version is None:
        return status["ready"]
    return any(v["version"] == version and v["ready"] for v in status["versions"])


async def infer(dp: DataPlane, name: str, version: str | None, request: object, tail: bytes) -> tuple[dict, bytes]:
    """(response JSON, binary tail) for one inference request."""
    if dp.config.model(name) is None and dp.config.pipeline(name) is None:
        raise ModelNotFound(f"model '{name}' is not served")
    if not isinstance(request, dict):
        raise InvalidInput("the inference request must be a JSON object with 'inputs'")
    texts = decode_texts(request, tail, name)
    params = request.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput("parameters must be a JSON object")
    model_params = {k: params[k] for k in ("max_new_tokens",) if k in params}
    records, answered = await dp.infer_texts(name, version, texts, model_params)
    outputs, out_tail = encode_outputs(records, request.get("outputs"), bool(params.get("binary_data_output")))
    response = {"model_name": name, "outputs": outputs}
    if answered:
        response["model_version"] = answered
    if isinstance(request.get("id"), str):
        response["id"] = request["id"]
    return response, out_tail


async def repository_index(dp: DataPlane) -> list[dict]:
    """Every version the gateway knows, then every pipeline (as Triton lists ensembles). A version is READY
    only when it is loaded, answers, and its model can take unpinned requests (some version has traffic);
    a pipeline is READY when every model it calls is."""
    from serve_app.app import open_registry  # the registry is optional for folder-only configs

    statuses = await asyncio.gather(*(dp.model_status(m.name) for m in dp.config.models))
    entries = []
    registry = None
    for model, status in zip(dp.config.models, statuses, strict=True):
        answering = {v["version"] for v in status["versions"] if v["ready"]}
        known = {v["version"] for v in status["versions"]}
        if model.source is None and model.task is not Task.identity:
            registry = registry or open_registry(dp.config)
            known |= {str(v.iteration) for v in await asyncio.to_thread(registry.versions, model.registry_name)}
        loaded = set(dp.routes[model.name].versions)
        for v in sorted(known, key=lambda x: (len(x), x)):
            if v not in loaded:
                state, reason = "UNAVAILABLE", "not loaded"
            elif v not in answering:
                state, reason = "UNAVAILABLE", "loaded, but its replicas do not answer"
            elif not status["ready"]:
                state, reason = "UNAVAILABLE", "loaded, but no version of the model takes traffic; set its traffic"
            else:
                state, reason = "READY", ""
            entries.append({"name": model.name, "version": v, "state": state, "reason": reason})
    pipelines = await asyncio.gather(*(dp.pipeline_status(p.name) for p in dp.config.pipelines))
    for p in pipelines:
        entries.append({"name": p["name"], "version": "", "state": "READY" if p["ready"] else "UNAVAILABLE",
                        "reason": p["reason"]})
    return entries


def _version_param(body: object) -> str | None:
    if body in (None, b"", {}):
        return None
    params = body.get("parameters") if isinstance(body, dict) else None
    if params is None:
        return None
    if not isinstance(params, dict):
        raise InvalidInput("parameters must be a JSON object")
    version = params.get("version")
    if version is not None and not isinstance(version, str | int):
        raise InvalidInput("parameters.version must be a version selector such as \"3\" or \"stable\"")
    return None if version is None else str(version)


async def load(dp: DataPlane, name: str, body: object) -> None:
    """Load one version (`parameters.version`, any selector) or, without one, the configured versions back
    with their configured traffic (after an unload of every version, load makes the model ready again)."""
    version = _version_param(body)
    if version is None:
        await dp.load_configured(name)
    else:
        await dp.load(name, version)


async def unload(dp: DataPlane, name: str, body: object) -> None:
    """Unload one version (`parameters.version`) or, as Triton does, every loaded version of the model."""
    version = _version_param(body)
    dp.registry_model(name)  # unknown or folder-backed models fail before anything changes
    labels = [version] if version else sorted(dp.routes[name].versions)
    if not labels:
        raise ModelNotReady(f"model '{name}' has no loaded version")
    for label in labels:
        await dp.unload(name, label)
