"""Layer pruning with distillation on tiny random-weight classifiers: which blocks stay, that the student
learns its parent's answers, that it composes with head pruning and ONNX int8, and what is refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from safetensors.torch import load_file
from support.tiny_models import build_tiny_classifier
from transformers import AutoTokenizer

from serve_app.optimize.build import build_variant, load_parent
from serve_app.optimize.distill import DistillSettings
from serve_app.optimize.plan import PlanError, make_plan
from serve_app.runtime.classifier import OnnxClassifier, TextClassifier
from serve_app.runtime.structure import head_counts, spaced_layers
from serve_app.runtime.variant import read_variant

TEXTS = ["The central bank raised interest rates again.", "The striker scored twice in the cup final.",
         "A new phone with a folding screen went on sale.", "The minister resigned after the vote.",
         "The film won three awards at the festival.", "Shares fell as oil prices rose.",
         "Rain stopped play on the second day.", "The chip maker reported record profits."] * 2
QUICK = DistillSettings(epochs=6, batch_size=4, learning_rate=2e-3, teacher_length=32, student_length=32)


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    # Wide initial weights: a random model whose answers differ from text to text, so there is something to learn.
    return build_tiny_classifier(tmp_path_factory.mktemp("deep") / "tiny", seed=5, initializer_range=0.3,
                                 num_hidden_layers=4)


def build(parent, tmp_path, name, settings=QUICK, texts=TEXTS, **plan_args):
    out = tmp_path / name
    out.mkdir()
    plan = make_plan("classification", **plan_args)
    info = build_variant(parent, plan, "classification", out, calibration=TEXTS, distill_texts=texts,
                         distill_settings=settings)
    return out, info


def logits(folder, texts=TEXTS) -> torch.Tensor:
    model = load_parent(folder, "classification")[0]
    enc = AutoTokenizer.from_pretrained(folder)(texts, truncation=True, max_length=32, padding=True,
                                                 return_tensors="pt")
    with torch.inference_mode():
        return model(**enc).logits


def kl_to(parent_logits: torch.Tensor, student_logits: torch.Tensor) -> float:
    return float(F.kl_div(F.log_softmax(student_logits, -1), F.softmax(parent_logits, -1), reduction="batchmean"))


def test_kept_blocks_are_spread_evenly_from_the_first():
    assert spaced_layers(6, 3) == [0, 2, 4]
    assert spaced_layers(6, 2) == [0, 3]
    assert spaced_layers(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        spaced_layers(4, 0)


def test_layer_pruning_keeps_every_other_block_with_its_weights(parent, tmp_path):
    untrained, info = build(parent, tmp_path, "untrained", settings=DistillSettings(epochs=0), prune=["layers:0.5"])
    assert info["layers_kept"] == [0, 2]
    assert load_parent(untrained, "classification")[0].config.num_hidden_layers == 2
    state, original = load_file(untrained / "model.safetensors"), load_file(parent / "model.safetensors")
    assert not [k for k in state if k.startswith(("bert.encoder.layer.2.", "bert.encoder.layer.3."))]
    key = "attention.self.query.weight"
    assert torch.equal(state[f"bert.encoder.layer.1.{key}"], original[f"bert.encoder.layer.2.{key}"])
    assert torch.equal(state[f"bert.encoder.layer.0.{key}"], original[f"bert.encoder.layer.0.{key}"])
    assert read_variant(untrained).transforms == ["prune-layers(0.5)"]


def test_distillation_teaches_the_student_its_parents_answers(parent, tmp_path):
    untrained, _ = build(parent, tmp_path, "untrained", settings=DistillSettings(epochs=0), prune=["layers:0.5"])
    student, info = build(parent, tmp_path, "student", prune=["layers:0.5"])
    teacher = logits(parent)
    before, after = kl_to(teacher, logits(untrained)), kl_to(teacher, logits(student))
    assert after < before / 2, (before, after)
    assert info["distill_kl"] >= 0
    agree = (logits(student).argmax(-1) == teacher.argmax(-1)).float().mean()
    assert agree >= 0.75
    # The word embeddings were frozen while it learned: they are the parent's, bit for bit.
    emb = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(load_file(student / "model.safetensors")[emb], load_file(parent / "model.safetensors")[emb])


def test_layers_compose_with_heads_and_onnx_int8(parent, tmp_path):
    out, info = build(parent, tmp_path, "composed", prune=["heads:0.5", "layers:0.5"], runtime="onnx",
                      quantize="int8")
    spec = read_variant(out)
    # Heads removed in blocks 0 and 2 before the cut are recorded under those blocks' new indices 0 and 1.
    assert sorted(spec.pruned_heads) == [0, 1] and info["layers_kept"] == [0, 2]
    served = OnnxClassifier(out)
    assert len(served.predict(TEXTS[:3])) == 3
    torch_variant, _ = build(parent, tmp_path, "heads-then-layers", prune=["heads:0.5", "layers:0.5"])
    assert head_counts(TextClassifier(torch_variant).model) == [1, 1]


def test_a_short_variant_distils_at_its_own_length(parent, tmp_path, monkeypatch):
    from serve_app.optimize import build as build_module

    lengths = []
    real = build_module.distill
    monkeypatch.setattr(build_module, "distill", lambda model, targets, tok, texts, settings, tick: (
        lengths.append(settings.student_length), real(model, targets, tok, texts, settings, tick))[1])
    build(parent, tmp_path, "short", prune=["layers:0.5"], max_length=16)
    assert lengths == [16]


@pytest.mark.parametrize(("args", "message"), [
    ({"prune": ["layers:1.5"]}, "between 0 and 1"),
    ({"prune": ["layers"]}, "layers:FRACTION"),
])
def test_bad_layer_plans_are_refused(args, message):
    with pytest.raises(PlanError, match=message):
        make_plan("classification", **args)


def test_summarizers_cannot_lose_layers_and_students_need_texts(parent, tmp_path):
    with pytest.raises(PlanError, match="BERT-style classifiers"):
        make_plan("summarization", prune=["layers:0.5"])
    with pytest.raises(PlanError, match="training texts"):
        build(parent, tmp_path, "no-texts", texts=None, prune=["layers:0.5"])
