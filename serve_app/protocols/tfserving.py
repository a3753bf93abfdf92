"""TensorFlow Serving REST compatibility, for clients written against TF Serving's predict API.

    POST /v1/models/{name}[/versions/{v}]:predict   {"instances": [...]} -> {"predictions": [...]}
                                                    {"inputs": [...] | {"text": [...]}} -> {"outputs": {...}}
    GET  /v1/models/{name}[/versions/{v}]           status (model_version_status), merged into ours
    GET  /v1/models/{name}/metadata                 signature_def
Errors are {"error": "..."}, as TF Serving sends them.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request

from serve_app.dataplane import DataPlane
from serve_app.errors import InvalidInput
from serve_app.protocols import oip
from serve_app.protocols.json_body import decode_json
from serve_app.protocols.tensors import TEXT_INPUT

_DTYPES = {"BYTES": "DT_STRING", "FP32": "DT_FLOAT", "INT64": "DT_INT64", "BOOL": "DT_BOOL"}


def _texts_of(items: object, where: str) -> list[str]:
    if not isinstance(items, list) or not items:
        raise InvalidInput(f"{where}: a non-empty list of texts (or of {{\"{TEXT_INPUT}\": ...}} objects) is needed")
    texts = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            item = item.get(TEXT_INPUT)
        if not isinstance(item, str):
            raise InvalidInput(f"{where}[{i}]: must be a string or an object with a '{TEXT_INPUT}' string")
        texts.append(item)
    return texts


def parse_predict(body: object) -> tuple[list[str], bool]:
    """(texts, row format?) from a TF Serving predict body."""
    if not isinstance(body, dict):
        raise InvalidInput("the predict body must be a JSON object with 'instances' or 'inputs'")
    if ("instances" in body) == ("inputs" in body):
        raise InvalidInput("send exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    if "instances" in body:
        return _texts_of(body["instances"], "instances"), True
    inputs = body["inputs"]
    if isinstance(inputs, dict):
        unexpected = sorted(k for k in inputs if k != TEXT_INPUT)
        if unexpected:  # as in OIP: the one input is `text`; another name is a client bug, not the text
            raise InvalidInput(f"inputs: unexpected inputs {unexpected}; the only input is '{TEXT_INPUT}'")
        inputs = inputs.get(TEXT_INPUT)
    return _texts_of(inputs, "inputs"), False


def version_status(status: dict) -> list[dict]:
    return [{"version": v["version"], "state": "AVAILABLE" if v["ready"] else "UNAVAILABLE",
             "status": {"error_code": "OK" if v["ready"] else "UNAVAILABLE", "error_message": ""}}
            for v in status["versions"]]


def add_tfserving_routes(app: FastAPI, get_dataplane: Callable[[], DataPlane],
                         deadline_of: Callable[[Request, DataPlane], float]) -> None:
    @app.post("/v1/models/{name}:predict")
    @app.post("/v1/models/{name}/versions/{version}:predict")
    async def predict(name: str, request: Request, version: str | None = None):
        dp = get_dataplane()
        texts, rows = parse_predict(decode_json(await request.body(), dp.limits))
        answer = await dp.deadlines.within(deadline_of(request, dp), dp.inference.infer(
            oip.inference_request(dp, name, version, texts, {})))
        records = answer.results
        if rows:
            return {"predictions": records}
        return {"outputs": {field: [r[field] for r in records] for field in records[0]}}

    @app.get("/v1/models/{name}/versions/{version}")
    async def version_status_route(name: str, version: str):
        status = await get_dataplane().status.model_status(name)
        found = [v for v in version_status(status) if v["version"] == version]
        if not found:
            return {"model_version_status": [{"version": version, "state": "UNKNOWN",
                                              "status": {"error_code": "NOT_FOUND", "error_message": "not loaded"}}]}
        return {"model_version_status": found}

    @app.get("/v1/models/{name}/metadata")
    async def metadata(name: str):
        meta = await oip.model_metadata(get_dataplane(), name)

        def sig(tensors):
            return {t["name"]: {"dtype": _DTYPES[t["datatype"]], "name": t["name"],
                                "tensor_shape": {"dim": [{"size": str(d)} for d in t["shape"]]}} for t in tensors}

        return {"model_spec": {"name": name, "signature_name": "", "version": (meta["versions"] or [""])[-1]},
                "metadata": {"signature_def": {"signature_def": {"serving_default": {
                    "inputs": sig(meta["inputs"]), "outputs": sig(meta["outputs"]),
                    "method_name": "tensorflow/serving/predict"}}}}}
