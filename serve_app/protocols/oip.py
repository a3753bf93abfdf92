"""Open Inference Protocol v2 operations over the dataplane (transport-agnostic; REST and gRPC share them)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from serve_app import __version__
from serve_app.dataplane import DataPlane, InferenceRequest
from serve_app.dataplane.priority import CURRENT, request_priority
from serve_app.dataplane.selection import ACCURACY_PARAM, BUDGET_PARAM
from serve_app.errors import InvalidInput, ModelNotFound, ModelNotReady
from serve_app.plan import open_registry
from serve_app.protocols.hints import request_hints
from serve_app.protocols.tensors import (
    TEXT_INPUT,
    check_text_input,
    encode_outputs,
    json_tensors,
    requested_outputs,
)
from serve_app.tasks import contract

SERVER_NAME = "inference-gateway"
EXTENSIONS = ["binary_tensor_data", "model_repository", "generate"]

_FIELD_TYPES = {"text": ("BYTES", [-1]), "label": ("BYTES", [-1]), "number": ("FP32", [-1]),
                "probabilities": ("FP32", [-1, -1]), "branches": ("BYTES", [-1])}


def server_metadata() -> dict:
    return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}


def _tensor(name: str, datatype: str, shape: list[int]) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape}


async def model_metadata(dp: DataPlane, name: str, version: str | None = None) -> dict:
    inputs = [_tensor(TEXT_INPUT, "BYTES", [-1])]
    dp.table.check_served(name)
    if dp.table.is_pipeline(name):
        outputs = [_tensor(f, *_FIELD_TYPES[t]) for f, t in dp.status.pipeline_fields(name).items()]
        return {"name": name, "versions": [], "platform": "inference-gateway/pipeline",
                "inputs": inputs, "outputs": outputs}
    model = dp.table.model(name)
    loaded = dp.table.loaded(name)
    if version is not None and version not in loaded:
        raise ModelNotFound(f"version {version} of '{name}' is not loaded; loaded: {', '.join(loaded) or 'none'}")
    return {"name": name, "versions": loaded, "platform": f"inference-gateway/{model.runtime.value}",
            "inputs": inputs, "outputs": contract(model.task).oip_outputs(),
            "properties": {"task": str(model.task), **serving_properties(model)}}


def serving_properties(model) -> dict[str, str]:
    """Selection and caching as metadata properties (strings, as OIP's parameters are)."""
    props = {}
    if model.selection is not None:
        props |= {"selection_variants": ",".join(model.selection.variants),
                  "selection_on_unmet": model.selection.on_unmet,
                  "selection_parameters": f"{BUDGET_PARAM},{ACCURACY_PARAM}"}
    if model.cache is not None:
        props |= {"response_cache": f"max_bytes={model.cache.max_bytes},ttl_s={model.cache.ttl_s:g}"}
    return props


async def model_ready(dp: DataPlane, name: str, version: str | None = None) -> bool:
    dp.table.check_served(name)
    if dp.table.is_pipeline(name):
        return (await dp.status.pipeline_status(name))["ready"]
    return await dp.status.version_ready(name, version)


def inference_request(dp: DataPlane, name: str, version: str | None, texts: list[str],
                      params: object, headers: Mapping[str, str] | None = None) -> InferenceRequest:
    """An OIP inference request for a model or a pipeline; `params` are the request's parameters, of which
    the model's task takes those it declares (`max_new_tokens` for summarizers)."""
    if not isinstance(params, dict):
        raise InvalidInput("parameters must be a JSON object")
    needs, fresh = request_hints(params, headers or {})
    CURRENT.set(request_priority(params, {k.lower(): v for k, v in (headers or {}).items()}))
    if dp.table.is_pipeline(name):  # its switch nodes may test any parameter or header
        return InferenceRequest(name, texts, params=dict(params), pipeline=True, fresh=fresh,
                                headers={k.lower(): v for k, v in (headers or {}).items()})
    names = contract(dp.table.model(name).task).param_names
    return InferenceRequest(name, texts, version, {k: params[k] for k in names if k in params}, needs=needs,
                            fresh=fresh)


async def infer(dp: DataPlane, name: str, version: str | None, request: object, tail: bytes,
                headers: Mapping[str, str] | None = None) -> tuple[dict, bytes]:
    """(response JSON, binary tail) for one OIP REST inference request."""
    dp.table.check_served(name)
    if not isinstance(request, dict):
        raise InvalidInput("the inference request must be a JSON object with 'inputs'")
    texts = check_text_input(json_tensors(request, tail, dp.limits.max_texts), name)
    params = {} if request.get("parameters") is None else request["parameters"]
    call = inference_request(dp, name, version, texts, params, headers)  # checks `params` is an object
    binary = bool(params.get("binary_data_output"))
    wanted = requested_outputs(request.get("outputs"), binary)
    answer = await dp.inference.infer(call)
    outputs, out_tail = encode_outputs(answer.results, wanted, binary)
    response = {"model_name": name, "outputs": outputs}
    if answer.version:
        response["model_version"] = answer.version
    if answer.oip_parameters():
        response["parameters"] = answer.oip_parameters()
    if isinstance(request.get("id"), str):
        response["id"] = request["id"]
    return response, out_tail


async def repository_index(dp: DataPlane) -> list[dict]:
    """Every version the gateway knows, then every pipeline (as Triton lists ensembles). A version is READY
    only when it is loaded, answers, and its model can take unpinned requests (some version has traffic);
    a pipeline is READY when every model it calls is."""
    models = dp.config.models
    statuses = await asyncio.gather(*(dp.status.model_status(m.name) for m in models))
    registry = None
    entries = []
    for model, status in zip(models, statuses, strict=True):
        known = {v["version"] for v in status["versions"]}
        if model.source is None and contract(model.task).has_files:
            registry = registry or open_registry(dp.config)  # opened here: folder-only configs need none
            known |= {str(v.iteration) for v in await asyncio.to_thread(registry.versions, model.registry_name)}
        entries += _version_entries(model.name, known, set(dp.table.loaded(model.name)), status)
    pipelines = await asyncio.gather(*(dp.status.pipeline_status(p.name) for p in dp.config.pipelines))
    for p in pipelines:
        entries.append({"name": p["name"], "version": "", "state": "READY" if p["ready"] else "UNAVAILABLE",
                        "reason": p["reason"]})
    return entries


def _version_entries(name: str, known: set[str], loaded: set[str], status: dict) -> list[dict]:
    answering = {v["version"] for v in status["versions"] if v["ready"]}
    entries = []
    for v in sorted(known, key=lambda x: (len(x), x)):
        if v not in loaded:
            state, reason = "UNAVAILABLE", "not loaded"
        elif v not in answering:
            state, reason = "UNAVAILABLE", "loaded, but its replicas do not answer"
        elif not status["ready"]:
            state, reason = "UNAVAILABLE", "loaded, but no version of the model takes traffic; set its traffic"
        else:
            state, reason = "READY", ""
        entries.append({"name": name, "version": v, "state": state, "reason": reason})
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
        await dp.admin.load_configured(name)
    else:
        await dp.admin.load(name, version)


async def unload(dp: DataPlane, name: str, body: object) -> None:
    """Unload one version (`parameters.version`) or, as Triton does, every loaded version of the model."""
    version = _version_param(body)
    dp.admin.registry_model(name)  # unknown or folder-backed models fail before anything changes
    labels = [version] if version else dp.table.loaded(name)
    if not labels:
        raise ModelNotReady(f"model '{name}' has no loaded version")
    for label in labels:
        await dp.admin.unload(name, label)
