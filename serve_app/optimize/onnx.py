"""ONNX export of sequence classifiers and what onnxruntime does with it: graph fusion, int8, int4.

- Export uses the TorchScript exporter with eager attention: its graph is the pattern onnxruntime's transformer
  optimizer recognises, so attention, GELU and layer norms fuse into single kernels (SDPA exports do not fuse).
- int8: `quantize_dynamic` (int8 weights per tensor, activations quantized on the fly; VNNI kernels on CPU).
- int8-static: `quantize_static` with activation ranges calibrated on training-split texts (QOperator
  QLinearMatMul on the unfused export: the quantizer cannot place scales around the fused Attention ops, and
  QDQ around them ran 2x slower than fp32 on an AVX2 CPU without VNNI).
- int4: `MatMulNBits` weight-only quantization with per-block scales; onnxruntime runs it with its own int4
  kernels, so the model is smaller in memory as well as on disk.
Every step is checked against the torch logits; a fusion that changes the outputs is dropped, not shipped.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)
INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids"]
FUSION_TOLERANCE = 1e-3  # max |logit difference| allowed for a pure graph rewrite (fp32)


@contextmanager
def quiet():
    """onnxruntime's optimizer and quantizer log every tensor at INFO on the root logger; keep warnings only."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)


def sample_inputs(tokenizer, texts: list[str], max_length: int = 64) -> dict[str, np.ndarray]:
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="np")
    return {k: v.astype(np.int64) for k, v in enc.items()}


def run_onnx(path: Path, feed: dict[str, np.ndarray], threads: int = 2) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feed.items() if k in names})[0]


def export_classifier(model, feed: dict[str, np.ndarray], out: Path) -> Path:
    """Export a torch sequence classifier (fp32, CPU) to `out` with dynamic batch and sequence axes."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    names = [n for n in INPUT_NAMES if n in feed]
    args = tuple(torch.from_numpy(feed[n]) for n in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(model.eval(), args, str(out), input_names=names, output_names=["logits"],
                          dynamic_axes=axes, opset_version=17, dynamo=False)
    return out


def fuse(src: Path, out: Path, feed: dict[str, np.ndarray], reference: np.ndarray, num_heads: int,
         hidden_size: int) -> bool:
    """onnxruntime's BERT optimizer (attention/GELU/LayerNorm fusion). Falls back to a copy if outputs move."""
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        with quiet():
            optimized = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                                       opt_level=1)
        optimized.save_model_to_file(str(out))
        diff = float(np.abs(run_onnx(out, feed) - reference).max())
        if diff <= FUSION_TOLERANCE:
            return True
        log.warning("graph fusion moved the logits by %.2g; keeping the unfused graph", diff)
    except Exception as err:  # the optimizer is pattern-based; an unknown pattern is not fatal
        log.warning("graph fusion failed (%s); keeping the unfused graph", err)
    shutil.copy(src, out)
    return False


def quantize_int8(src: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Fused ops (Attention, SkipLayerNormalization) are outside ONNX shape inference: tell the quantizer
    # their outputs are float instead of letting it give up.
    with quiet():
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def quantize_int8_static(src: Path, out: Path, calibration: list[dict[str, np.ndarray]]) -> None:
    """Static int8: activation scales from `calibration` feeds (int64 input dicts, as `sample_inputs` makes)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter(calibration)

        def get_next(self):
            return next(self.feeds, None)

    with quiet():
        quantize_static(str(src), str(out), Feeds(), quant_format=QuantFormat.QOperator,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["MatMul", "Gemm"],
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def quantize_int4(src: Path, out: Path, block_size: int = 32) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), block_size=block_size, is_symmetric=True)
    with quiet():
        quantizer.process()
    quantizer.model.save_model_to_file(str(out))
