"""OIP v2 tensors: decode the text input (JSON or binary extension), encode records as output tensors.

Binary tensor extension (what tritonclient.http sends by default): the body is a JSON header of
`Inference-Header-Content-Length` bytes followed by raw tensor data, in input order, for every input whose
`parameters.binary_data_size` is set. BYTES elements are a 4-byte little-endian length and the bytes.
"""

from __future__ import annotations

import json
import struct

from serve_app.errors import InvalidInput

TEXT_INPUT = "text"


def pack_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def unpack_bytes(raw: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(raw):
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


def decode_texts(request: dict, tail: bytes, model: str = "") -> list[str]:
    """The request's one BYTES input, as texts. Every model and pipeline declares one input, `text`
    (its metadata says so): a request naming another input, or lacking `text`, is refused naming them,
    as Triton refuses unexpected inputs, instead of reading whatever tensor came as the text."""
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, dict) for t in inputs):
        raise InvalidInput(f"inputs: send exactly one BYTES tensor (named '{TEXT_INPUT}') holding the texts")
    target = f"model '{model}'" if model else "the model"
    names = [t.get("name") for t in inputs]
    unexpected = [n for n in names if n != TEXT_INPUT]
    if unexpected:
        shown = ", ".join(repr(n) if isinstance(n, str) else "(no name)" for n in unexpected)
        raise InvalidInput(f"unexpected inputs {shown} for {target}: its only input is '{TEXT_INPUT}' (BYTES)",
                           field="inputs")
    if len(inputs) != 1:
        raise InvalidInput(f"input '{TEXT_INPUT}' is sent {len(inputs)} times to {target}; send it once",
                           field="inputs")
    tensor = inputs[0]
    name = TEXT_INPUT
    if tensor.get("datatype") != "BYTES":
        raise InvalidInput(f"input '{name}': datatype must be BYTES, got {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape) or not shape:
        raise InvalidInput(f"input '{name}': shape must be a list of non-negative integers, e.g. [2]")
    count = 1
    for d in shape:
        count *= d
    params = tensor.get("parameters") or {}
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not isinstance(size, int) or size < 0 or size > len(tail):
            raise InvalidInput(f"input '{name}': binary_data_size {size!r} does not fit the binary data")
        items = unpack_bytes(tail[:size])
    else:
        data = tensor.get("data")
        if not isinstance(data, list):
            raise InvalidInput(f"input '{name}': 'data' must be a list of strings")
        items = [_flatten(d) for d in data]
        items = [x for row in items for x in row]
    if len(items) != count:
        raise InvalidInput(f"input '{name}': shape {shape} holds {count} elements, data has {len(items)}")
    texts = []
    for i, item in enumerate(items):
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"input '{name}': element {i} is not valid UTF-8") from None
        if not isinstance(item, str):
            raise InvalidInput(f"input '{name}': element {i} must be a string")
        texts.append(item)
    return texts


def _flatten(value) -> list:
    return [x for v in value for x in _flatten(v)] if isinstance(value, list) else [value]


def _column(records: list[dict], field: str) -> tuple[str, list[int], list]:
    """(datatype, shape, flat data) of one field across records."""
    values = [r[field] for r in records]
    first = values[0]
    n = len(values)
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


def encode_outputs(records: list[dict], requested: list[dict] | None, binary_default: bool) -> tuple[list, bytes]:
    """Output tensors for `records` (one dict per text); binary ones also return their bytes, in order."""
    fields = list(records[0]) if records else []
    if requested:
        names = [o.get("name") for o in requested if isinstance(o, dict)]
        unknown = [n for n in names if n not in fields]
        if unknown:
            raise InvalidInput(f"outputs {unknown} are not produced; available: {', '.join(fields)}")
        wanted = {o["name"]: bool((o.get("parameters") or {}).get("binary_data", binary_default))
                  for o in requested}
    else:
        wanted = {f: binary_default for f in fields}
    outputs, tail = [], b""
    for field, binary in wanted.items():
        datatype, shape, data = _column(records, field)
        out = {"name": field, "datatype": datatype, "shape": shape}
        if field == "probabilities" and records:
            out["parameters"] = {"labels": json.dumps(list(records[0][field]))}
        if binary:
            raw = _raw(datatype, data)
            out.setdefault("parameters", {})["binary_data_size"] = len(raw)
            tail += raw
        else:
            out["data"] = data
        outputs.append(out)
    return outputs, tail


def _raw(datatype: str, data: list) -> bytes:
    if datatype == "BYTES":
        return pack_bytes([d.encode() for d in data])
    fmt = {"FP32": "f", "INT64": "q", "BOOL": "?"}[datatype]
    return struct.pack(f"<{len(data)}{fmt}", *data)
