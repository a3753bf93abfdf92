"""Text classifier runtimes: any `AutoModelForSequenceClassification` checkpoint folder, run by torch, or its
ONNX export run by onnxruntime. `load_classifier` picks the runtime a folder asks for (see variant.py)."""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

import numpy as np
import torch

from serve_app.runtime.placement import Placement, check_model_folder, pick_placement
from serve_app.runtime.processing import chunks, classification_result
from serve_app.runtime.variant import VariantSpec, read_variant

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class _Classifier:
    """Tokenizer, labels and length limit, shared by both runtimes; subclasses turn a batch into probabilities."""

    def __init__(self, path: Path, max_length: int | None, placement: Placement):
        from transformers import AutoConfig, AutoTokenizer

        path = Path(path)
        check_model_folder(path)
        self.path = path
        self.placement = placement
        self.variant = read_variant(path)
        self.config = AutoConfig.from_pretrained(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # A fast tokenizer's truncation and padding are state of its Rust backend, set before each batch: two
        # batches tokenized at once on one backend (max_concurrent_batches) could run one with the other's
        # settings, untruncated (past the position table: "index out of range") or unpadded (ragged arrays): seen
        # 2 times in 600 concurrent calls. So each worker thread tokenizes with its own copy of the backend. (A
        # lock would do, but a low-class batch's idle-priority thread holding it while the OS keeps it off the
        # CPU would hold up the high-class batch beside it: see runtime/step_aside.py.)
        self._own = threading.local()
        self.labels = [self.config.id2label[i] for i in range(self.config.num_labels)]
        model_limit = min(self.tokenizer.model_max_length, getattr(self.config, "max_position_embeddings", 512))
        # A sequence-length variant reads at most its own limit, whatever the config (or a benchmark) asks.
        self.limit = min(model_limit, self.variant.max_length or model_limit)
        self.max_length = max_length

    @property
    def max_length(self) -> int:
        return self._max_length

    @max_length.setter
    def max_length(self, value: int | None) -> None:
        self._max_length = min(value, self.limit) if value else self.limit

    def _probs(self, feed: dict[str, np.ndarray]) -> list[list[float]]:
        raise NotImplementedError

    def details(self) -> dict:
        """What the replica reports about this runtime (GET /v1/models)."""
        return {"labels": self.labels, "max_length": self.max_length, "runtime": self.variant.runtime,
                "transforms": self.variant.transforms}

    def _backend(self):
        """This thread's own copy of the Rust tokenizer (made on its first batch, from the loaded one)."""
        backend = getattr(self._own, "backend", None)
        if backend is None:
            from tokenizers import Tokenizer

            backend = self._own.backend = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
        return backend

    def encode(self, texts: list[str]) -> tuple[dict[str, np.ndarray], list[bool], list[int]]:
        """One pass of the Rust tokenizer over a batch: the model's inputs (int64, padded to the longest, cut to
        max_length), whether each text was cut and how many tokens of it the model reads. A cut text keeps what
        was cut off as its encoding's overflow, so nothing is tokenized twice to learn its full length."""
        backend, tok = self._backend(), self.tokenizer
        backend.enable_truncation(self.max_length, direction=tok.truncation_side)
        backend.enable_padding(direction=tok.padding_side, pad_id=tok.pad_token_id,
                               pad_type_id=tok.pad_token_type_id, pad_token=tok.pad_token)
        encodings = backend.encode_batch(texts)
        fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
        feed = {name: np.array([getattr(e, fields[name]) for e in encodings], dtype=np.int64)
                for name in tok.model_input_names if name in fields}
        cut = [bool(e.overflowing) for e in encodings]
        return feed, cut, [sum(e.attention_mask) for e in encodings]

    def predict(self, texts: list[str], micro_batch: int = 16) -> list[dict]:
        results: list[dict] = []
        for chunk in chunks(texts, micro_batch):
            feed, cut, tokens = self.encode(list(chunk))
            for p, was_cut, n in zip(self._probs(feed), cut, tokens):
                results.append(classification_result(p, self.labels, was_cut, n))
        return results


class TextClassifier(_Classifier):
    """torch runtime. Honours a variant's dtype, removed heads and load-time dynamic int8 quantization."""

    def __init__(self, path: Path, max_length: int | None = None, placement: Placement | None = None):
        super().__init__(path, max_length, placement or pick_placement())
        self.model = load_torch_model(self.path, self.variant, self.placement).eval()
        self.placement = Placement(self.placement.device, next(self.model.parameters(), torch.empty(0)).dtype)

    @torch.inference_mode()
    def _probs(self, feed: dict[str, np.ndarray]) -> list[list[float]]:
        enc = {name: torch.from_numpy(array).to(self.placement.device) for name, array in feed.items()}
        logits = self.model(**enc).logits
        return torch.softmax(logits.float(), dim=-1).cpu().tolist()


def load_torch_model(path: Path, variant: VariantSpec, placement: Placement, auto_class=None):
    """The model of a checkpoint folder as its variant describes it, on `placement.device`."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification

    auto_class = auto_class or AutoModelForSequenceClassification
    on_gpu = placement.device != "cpu"
    dtype = DTYPES[variant.dtype] if variant.dtype else placement.dtype
    if variant.quantization == "dynamic-int8" and not on_gpu:
        dtype = torch.float32  # quantize_dynamic takes fp32 Linear layers
    if variant.pruned_heads:
        from serve_app.runtime.structure import remove_heads

        # from_pretrained cannot build layers of different widths: build, slice, then load the weights.
        model = auto_class.from_config(AutoConfig.from_pretrained(path))
        remove_heads(model, variant.pruned_heads)
        state = {}
        for file in sorted(Path(path).glob("*.safetensors")):
            state |= load_file(file)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]  # buffers
        if missing or unexpected:
            raise ValueError(f"{path}: weights do not fit the pruned shapes (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        model = model.to(dtype)
    else:
        model = auto_class.from_pretrained(path, dtype=dtype, use_safetensors=True)
    model = model.to(placement.device)
    if variant.quantization == "dynamic-int8":
        if on_gpu:
            log.warning("%s: dynamic int8 is a CPU runtime; running it in %s on the GPU", path, dtype)
        else:
            with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao, still works
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return model


class OnnxClassifier(_Classifier):
    """onnxruntime with all graph optimisations; CUDAExecutionProvider when onnxruntime-gpu sees a GPU."""

    def __init__(self, path: Path, max_length: int | None = None, placement: Placement | None = None,
                 threads: int | None = None):
        import onnxruntime as ort

        placement = placement or pick_placement()
        super().__init__(path, max_length, placement)
        onnx_file = self.path / (self.variant.onnx_file or "model.onnx")
        if not onnx_file.is_file():
            raise FileNotFoundError(f"{path} has no {onnx_file.name}; export it with `gateway optimize "
                                    "<model> --runtime onnx`")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        # Idle ORT threads otherwise spin for a while after each run, taking cores from the other replicas.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if placement.device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(onnx_file), options, providers=providers)
        device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        self.placement = Placement(device, torch.float32)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def _probs(self, feed: dict[str, np.ndarray]) -> list[list[float]]:
        logits = self.session.run(None, {name: feed[name] for name in self.input_names})[0].astype(np.float32)
        logits -= logits.max(axis=-1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=-1, keepdims=True)).tolist()


def load_classifier(path: Path, max_length: int | None = None, runtime: str = "auto",
                    placement: Placement | None = None) -> _Classifier:
    """The runtime the folder asks for (`runtime: auto`), or the one configured, refusing a mismatch."""
    path = Path(path)
    wanted = read_variant(path).runtime
    if runtime not in ("auto", wanted):
        raise ValueError(f"{path} is a '{wanted}' model but the config asks for runtime '{runtime}'; "
                         f"set runtime: {wanted} (or auto)")
    cls = OnnxClassifier if wanted == "onnx" else TextClassifier
    return cls(path, max_length, placement)
