"""OIP v2 tensors: decode the text input (JSON or binary extension), encode records as output tensors.

Binary tensor extension (what tritonclient.http sends by default): the body is a JSON header of
`Inference-Header-Content-Length` bytes followed by raw tensor data, in input order, for every input whose
`parameters.binary_data_size` is set. BYTES elements are a 4-byte little-endian length and the bytes.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

from serve_app.errors import InvalidInput

TEXT_INPUT = "text"


def pack_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def unpack_bytes(raw: bytes, max_items: int | None = None) -> list[bytes]:
    """The elements of a binary BYTES tensor; more than `max_items` of them is refused as soon as it is seen."""
    out, i = [], 0
    while i < len(raw):
        if max_items is not None and len(out) >= max_items:
            raise InvalidInput(f"binary BYTES tensor holds more than {max_items} elements; the limit is "
                               f"{max_items} texts per request", field="inputs")
        if i + 4 > len(raw):
            raise InvalidInput("binary BYTES tensor is truncated (a length prefix is cut)")
        (n,) = struct.unpack_from("<I", raw, i)
        i += 4
        if i + n > len(raw):
            raise InvalidInput("binary BYTES tensor is truncated (an element is shorter than its length)")
        out.append(raw[i:i + n])
        i += n
    return out


def split_body(raw: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tail) of a request or response body."""
    if header_length is None:
        return raw, b""
    if not header_length.isdigit() or int(header_length) > len(raw):
        raise InvalidInput(f"Inference-Header-Content-Length {header_length!r} does not fit the body "
                           f"of {len(raw)} bytes")
    n = int(header_length)
    return raw[:n], raw[n:]


@dataclass
class TextTensor:
    """One input tensor as a client sent it, whatever the transport: elements still bytes or values."""

    name: object
    datatype: object
    shape: object
    items: list | None  # None: the elements could not be read (the check says why)
    problem: str = ""


def check_text_input(tensors: list[TextTensor], model: str = "") -> list[str]:
    """The request's one BYTES input, as texts. Every model and pipeline declares one input, `text`
    (its metadata says so): a request naming another input, or lacking `text`, is refused naming them,
    as Triton refuses unexpected inputs, instead of reading whatever tensor came as the text."""
    if not tensors:
        raise InvalidInput(f"inputs: send exactly one BYTES tensor (named '{TEXT_INPUT}') holding the texts")
    target = f"model '{model}'" if model else "the model"
    unexpected = [t.name for t in tensors if t.name != TEXT_INPUT]
    if unexpected:
        shown = ", ".join(repr(n) if isinstance(n, str) else "(no name)" for n in unexpected)
        raise InvalidInput(f"unexpected inputs {shown} for {target}: its only input is '{TEXT_INPUT}' (BYTES)",
                           field="inputs")
    if len(tensors) != 1:
        raise InvalidInput(f"input '{TEXT_INPUT}' is sent {len(tensors)} times to {target}; send it once",
                           field="inputs")
    return _texts(tensors[0])


def _texts(tensor: TextTensor) -> list[str]:
    name = TEXT_INPUT
    if tensor.datatype != "BYTES":
        raise InvalidInput(f"input '{name}': datatype must be BYTES, got {tensor.datatype!r}")
    shape = tensor.shape
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape) or not shape:
        raise InvalidInput(f"input '{name}': shape must be a list of non-negative integers, e.g. [2]")
    if tensor.items is None:
        raise InvalidInput(f"input '{name}': {tensor.problem}")
    count = math.prod(shape)
    if len(tensor.items) != count:
        raise InvalidInput(f"input '{name}': shape {shape} holds {count} elements, data has {len(tensor.items)}")
    texts = []
    for i, item in enumerate(tensor.items):
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"input '{name}': element {i} is not valid UTF-8") from None
        if not isinstance(item, str):
            raise InvalidInput(f"input '{name}': element {i} must be a string")
        texts.append(item)
    return texts


def json_tensors(request: dict, tail: bytes, max_items: int | None = None) -> list[TextTensor]:
    """The input tensors of an OIP REST request: JSON `data`, or the binary extension's bytes from `tail`."""
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, dict) for t in inputs):
        raise InvalidInput(f"inputs: send exactly one BYTES tensor (named '{TEXT_INPUT}') holding the texts")
    return [_json_tensor(t, tail, max_items) for t in inputs]


def _json_tensor(tensor: dict, tail: bytes, max_items: int | None) -> TextTensor:
    out = TextTensor(tensor.get("name"), tensor.get("datatype"), tensor.get("shape"), None)
    params = {} if tensor.get("parameters") is None else tensor["parameters"]
    if not isinstance(params, dict):
        raise InvalidInput(f"inputs: the parameters of input {tensor.get('name')!r} must be a JSON object",
                           field="inputs.parameters")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not isinstance(size, int) or size < 0 or size > len(tail):
            out.problem = f"binary_data_size {size!r} does not fit the binary data"
        else:
            out.items = unpack_bytes(tail[:size], max_items)
    elif not isinstance(tensor.get("data"), list):
        out.problem = "'data' must be a list of strings"
    else:
        out.items = [x for d in tensor["data"] for x in _flatten(d)]
    return out


def _flatten(value) -> list:
    return [x for v in value for x in _flatten(v)] if isinstance(value, list) else [value]


def _column(records: list[dict], field: str) -> tuple[str, list[int], list]:
    """(datatype, shape, flat data) of one field across records. A field some records lack (a pipeline's switch
    answered only some texts) is BYTES: "" where absent for text, else JSON ("null" where absent)."""
    values = [r.get(field) for r in records]
    n = len(values)
    if any(v is None for v in values):
        if all(v is None or isinstance(v, str) for v in values):
            return "BYTES", [n], ["" if v is None else v for v in values]
        return "BYTES", [n], [json.dumps(v, sort_keys=True) for v in values]
    first = values[0]
    if isinstance(first, bool):
        return "BOOL", [n], values
    if isinstance(first, int):
        return "INT64", [n], values
    if isinstance(first, float):
        return "FP32", [n], values
    if isinstance(first, str):
        return "BYTES", [n], values
    if isinstance(first, dict) and first and all(isinstance(v, int | float) for v in first.values()):
        labels = list(first)
        return "FP32", [n, len(labels)], [float(v.get(label, 0.0)) for v in values for label in labels]
    return "BYTES", [n], [json.dumps(v, sort_keys=True) for v in values]


@dataclass
class Column:
    """One output tensor: a field of every record, with its OIP datatype, shape and flat data."""

    name: str
    datatype: str
    shape: list[int]
    data: list
    parameters: dict

    def raw(self) -> bytes:
        return _raw(self.datatype, self.data)


def output_columns(records: list[dict], requested: list[str] | None) -> list[Column]:
    """The output tensors for `records` (one dict per text): the fields asked for, or every field."""
    fields = list(dict.fromkeys(f for r in records for f in r))  # every field any record has, in order
    if requested:
        unknown = [n for n in requested if n not in fields]
        if unknown:
            raise InvalidInput(f"outputs {unknown} are not produced; available: {', '.join(fields)}")
    columns = []
    for field in requested or fields:
        datatype, shape, data = _column(records, field)
        first = next((r[field] for r in records if r.get(field) is not None), None)
        params = {"labels": json.dumps(list(first))} if field == "probabilities" and datatype == "FP32" else {}
        columns.append(Column(field, datatype, shape, data, params))
    return columns


def requested_outputs(requested: object, binary_default: bool) -> dict[str, bool] | None:
    """A request's `outputs` ({name: sent as binary}), checked before the model runs; None: every output."""
    if requested is None or requested == []:
        return None
    if not isinstance(requested, list):
        raise InvalidInput("outputs: must be a list of objects such as {\"name\": \"label\"}", field="outputs")
    wanted = {}
    for i, out in enumerate(requested):
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise InvalidInput(f"outputs[{i}]: must be an object with a string 'name'", field="outputs")
        params = {} if out.get("parameters") is None else out["parameters"]
        if not isinstance(params, dict):
            raise InvalidInput(f"outputs[{i}].parameters: must be a JSON object", field="outputs")
        wanted[out["name"]] = bool(params.get("binary_data", binary_default))
    return wanted


def encode_outputs(records: list[dict], wanted: dict[str, bool] | None, binary_default: bool) -> tuple[list, bytes]:
    """OIP REST output tensors for `records` (`wanted`: from `requested_outputs`); binary ones also return
    their bytes, in order."""
    outputs, tail = [], b""
    for col in output_columns(records, list(wanted) if wanted else None):
        out = {"name": col.name, "datatype": col.datatype, "shape": col.shape}
        if col.parameters:
            out["parameters"] = dict(col.parameters)
        if (wanted or {}).get(col.name, binary_default):
            raw = col.raw()
            out.setdefault("parameters", {})["binary_data_size"] = len(raw)
            tail += raw
        else:
            out["data"] = col.data
        outputs.append(out)
    return outputs, tail


def _raw(datatype: str, data: list) -> bytes:
    if datatype == "BYTES":
        return pack_bytes([d.encode() for d in data])
    fmt = {"FP32": "f", "INT64": "q", "BOOL": "?"}[datatype]
    return struct.pack(f"<{len(data)}{fmt}", *data)
