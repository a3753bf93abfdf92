"""Edge bundles: an ONNX classifier variant as a folder that runs without the gateway, torch or transformers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from serve_app.optimize.plan import PlanError
from serve_app.runtime.variant import read_variant

RUNNER = Path(__file__).with_name("edge_runner.py")


def write_bundle(variant_dir: Path, out: Path, max_length: int = 256, model: str | None = None,
                 version: str | None = None) -> Path:
    """model.onnx + tokenizer.json + labels.json + run.py (+ README.txt) in `out`. `model` and `version` (the
    registry's name and iteration) are recorded so that stream jobs running the bundle name what answered."""
    from transformers import AutoConfig, AutoTokenizer

    spec = read_variant(variant_dir)
    if spec.runtime != "onnx":
        raise PlanError(f"{variant_dir} is a torch model; bundle an ONNX variant (gateway optimize ... "
                        "--runtime onnx --quantize int8)")
    tokenizer = AutoTokenizer.from_pretrained(variant_dir)
    if not (variant_dir / "tokenizer.json").is_file():
        raise PlanError(f"{variant_dir} has no tokenizer.json (a fast tokenizer), which the runner needs")
    config = AutoConfig.from_pretrained(variant_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(variant_dir / (spec.onnx_file or "model.onnx"), out / "model.onnx")
    shutil.copy(variant_dir / "tokenizer.json", out / "tokenizer.json")
    shutil.copy(RUNNER, out / "run.py")
    limit = min(max_length, tokenizer.model_max_length, getattr(config, "max_position_embeddings", max_length))
    meta = {"labels": [config.id2label[i] for i in range(config.num_labels)], "max_length": limit,
            "pad_id": tokenizer.pad_token_id, "pad_token": tokenizer.pad_token, "transforms": spec.transforms}
    if model is not None:
        meta.update(model=model, version=version)
    (out / "labels.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "README.txt").write_text(
        "ONNX text classifier exported by `gateway edge-bundle`.\n"
        f"Transforms: {' + '.join(spec.transforms)}\n"
        "Run: pip install onnxruntime tokenizers numpy && python run.py \"some text\"\n")
    return out
