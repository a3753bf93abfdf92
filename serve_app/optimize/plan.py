"""What `gateway optimize` was asked to do, checked before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field

PRUNE_METHODS = ("random", "magnitude", "heads", "layers")
QUANTIZATIONS = ("int8", "int8-static", "int4", "bf16", "fp16")
GGUF_QUANTIZATIONS = ("q4_0", "q4_1", "q5_0", "q8_0", "q4_k_m", "iq4_nl", "f16", "bf16")  # optimize/gguf.py
RUNTIMES = ("torch", "onnx", "llama.cpp", "vllm")
VLLM_DTYPES = ("bf16", "fp16", "fp32")  # optimize/vllm_variant.py


class PlanError(ValueError):
    """An optimization request that cannot be carried out; the message says how to fix it."""


@dataclass(frozen=True)
class PruneStep:
    method: str
    amount: float
    scope: str = "global"  # magnitude only: 'global' or 'layer'

    @property
    def label(self) -> str:
        extra = f",{self.scope}" if self.method == "magnitude" else ""
        return f"prune-{self.method}({self.amount:g}{extra})"


@dataclass(frozen=True)
class Plan:
    prune: tuple[PruneStep, ...] = ()
    quantize: str | None = None
    runtime: str = "torch"
    max_length: int | None = None  # a sequence-length variant: inputs cut to this many tokens
    notes: list[str] = field(default_factory=list, compare=False)

    @property
    def transforms(self) -> list[str]:
        steps = [p.label for p in self.prune]
        if self.max_length:
            steps.append(f"truncate-{self.max_length}")
        if self.runtime == "onnx":
            steps.append("onnx")
        if self.runtime == "llama.cpp":
            return [*steps, f"gguf-{self.quantize}"]
        if self.runtime == "vllm":
            return [*steps, f"vllm-{self.quantize}"]
        if self.quantize:
            steps.append(f"quantize-{self.quantize}" if self.quantize.startswith("int") else self.quantize)
        return steps

    @property
    def label(self) -> str:
        return "+".join(self.transforms) or "copy"

    @property
    def needs_distillation(self) -> bool:
        """Unlabeled training-split texts on which a layer-pruned student learns its parent's answers."""
        return any(p.method == "layers" for p in self.prune)

    @property
    def needs_calibration(self) -> bool:
        """Training-split texts to rank heads or to calibrate static int8's activation ranges."""
        return self.quantize == "int8-static" or any(p.method == "heads" for p in self.prune)


def parse_prune(text: str) -> PruneStep:
    """`random:0.3`, `magnitude:0.5`, `magnitude:0.5:layer`, `heads:0.25`, `layers:0.5`."""
    parts = text.split(":")
    if parts[0] not in PRUNE_METHODS or len(parts) < 2 or len(parts) > (3 if parts[0] == "magnitude" else 2):
        raise PlanError(f"--prune {text!r}: use random:FRACTION, magnitude:FRACTION[:global|layer], "
                        "heads:FRACTION or layers:FRACTION (e.g. magnitude:0.3)")
    try:
        amount = float(parts[1])
    except ValueError:
        raise PlanError(f"--prune {text!r}: {parts[1]!r} is not a number") from None
    if not 0 < amount < 1:
        raise PlanError(f"--prune {text!r}: the fraction must be between 0 and 1 (exclusive)")
    scope = parts[2] if len(parts) == 3 else "global"
    if scope not in ("global", "layer"):
        raise PlanError(f"--prune {text!r}: scope must be 'global' or 'layer'")
    return PruneStep(parts[0], amount, scope)


def make_plan(task: str, prune: list[str] | None = None, quantize: str | None = None,
              runtime: str = "torch", max_length: int | None = None) -> Plan:
    steps = tuple(parse_prune(p) for p in prune or [])
    if runtime in ENGINE_VARIANTS:
        return _engine_plan(runtime, task, steps, quantize, max_length)
    if max_length is not None and (task != "classification" or not 8 <= max_length <= 4096):
        raise PlanError("--max-length cuts a classifier's inputs: give 8 to 4096 tokens (e.g. --max-length 64)")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise PlanError(f"--quantize {quantize!r}: choose one of {', '.join(QUANTIZATIONS)}")
    if runtime not in RUNTIMES:
        raise PlanError(f"--runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if task == "summarization":
        if runtime == "onnx":
            raise PlanError("the ONNX runtime serves classifiers; summarizers run on torch (try --quantize int8 "
                            "or bf16)")
        if quantize in ("int4", "int8-static"):
            raise PlanError(f"{quantize} runs on onnxruntime, which serves classifiers only; try --quantize int8")
        if any(s.method in ("heads", "layers") for s in steps):
            raise PlanError("head and layer pruning are for BERT-style classifiers; use random or magnitude pruning")
    elif task != "classification":
        raise PlanError(f"models of task {task!r} cannot be optimized")
    if quantize == "int4" and runtime != "onnx":
        raise PlanError("int4 weight-only quantization runs on onnxruntime (MatMulNBits): add --runtime onnx")
    if quantize == "int8-static" and runtime != "onnx":
        raise PlanError("static int8 (calibrated activation scales) runs on onnxruntime: add --runtime onnx")
    if quantize in ("bf16", "fp16") and runtime == "onnx":
        raise PlanError(f"{quantize} is a torch runtime option; drop --runtime onnx (or use --quantize int8)")
    if not steps and quantize is None and runtime == "torch" and max_length is None:
        raise PlanError("nothing to do: give --prune, --quantize, --max-length and/or --runtime onnx")
    return Plan(steps, quantize, runtime, max_length)


# Generation engines whose variants are one setting and nothing else: what that setting is, and its values.
ENGINE_VARIANTS = {"llama.cpp": ("a GGUF variant is a requantization", "a GGUF type", GGUF_QUANTIZATIONS),
                   "vllm": ("a vLLM variant is a dtype", "the dtype it computes in", VLLM_DTYPES)}


def _engine_plan(runtime: str, task: str, steps: tuple, quantize: str | None, max_length: int | None) -> Plan:
    """A GGUF requantization for llama.cpp, or a dtype for vLLM: nothing else composes with either."""
    what, setting, allowed = ENGINE_VARIANTS[runtime]
    if task != "summarization":
        raise PlanError(f"--runtime {runtime} serves generation models (summarizers); classifiers run on torch or onnx")
    if steps or max_length is not None:
        raise PlanError(f"{what} only: drop --prune and --max-length")
    if quantize not in allowed:
        raise PlanError(f"--runtime {runtime} needs --quantize with {setting}: {', '.join(allowed)}")
    return Plan((), quantize, runtime)
