"""Model runtimes on tiny random-weight models, in-process (no Ray): shapes, truncation, limits, determinism."""

import pytest
from support.tiny_models import TINY_LABELS

from serve_app.runtime.classifier import TextClassifier
from serve_app.runtime.summarizer import TextSummarizer

LONG = "word " * 400


@pytest.fixture(scope="module")
def classifier(tiny_models):
    return TextClassifier(tiny_models / "tiny-classifier", max_length=32)


@pytest.fixture(scope="module")
def summarizer(tiny_models):
    return TextSummarizer(tiny_models / "tiny-summarizer", max_length=64)


def test_classifier_gives_a_probability_table_per_text(classifier):
    results = classifier.predict(["short text", LONG, "another"], micro_batch=2)
    assert len(results) == 3
    for r in results:
        assert set(r["probabilities"]) == set(TINY_LABELS)
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)
    assert [r["truncated"] for r in results] == [False, True, False]
    assert results[1]["input_tokens"] == 32


def test_classifier_answers_do_not_depend_on_batch_company(classifier):
    alone = classifier.predict(["short text"])[0]
    together = classifier.predict(["short text", LONG, "x y z"], micro_batch=3)[0]
    assert alone["label"] == together["label"]
    assert alone["probabilities"] == pytest.approx(together["probabilities"], abs=1e-5)


def test_classifier_limit_is_capped_by_the_model(tiny_models):
    assert TextClassifier(tiny_models / "tiny-classifier", max_length=4096).max_length == 128


def test_summarizer_respects_each_requests_token_limit_and_flags_truncation(summarizer):
    results = summarizer.summarize(["A short article about markets.", LONG], [3, 7], micro_batch=2)
    assert [r["generated_tokens"] <= n for r, n in zip(results, [3, 7])] == [True, True]
    assert [r["truncated"] for r in results] == [False, True]
    assert results[1]["input_tokens"] == 64
    assert all(r["finish_reason"] in ("stop", "length") for r in results)


def test_summarizer_is_deterministic_and_batch_consistent(summarizer):
    text = "The central bank raised rates again on Tuesday."
    first = summarizer.summarize([text], [6])[0]
    assert summarizer.summarize([text], [6])[0] == first
    # Batched with a neighbour that wants more tokens, the greedy answer is cut at this request's own limit.
    batched = summarizer.summarize([text, "Something else entirely, much longer " * 3], [6, 12], micro_batch=2)[0]
    assert batched["summary"] == first["summary"]


def test_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="make models"):
        TextClassifier(tmp_path / "nope")


def test_a_seq2seq_checkpoint_also_serves_as_summarizer(tmp_path):
    from support.tiny_models import build_tiny_seq2seq

    runtime = TextSummarizer(build_tiny_seq2seq(tmp_path / "bart"), max_length=16)
    assert runtime.seq2seq
    results = runtime.summarize(["a short text", LONG], [4, 6], micro_batch=2)
    assert [r["generated_tokens"] <= n for r, n in zip(results, [4, 6])] == [True, True]
    assert [r["truncated"] for r in results] == [False, True]
    assert runtime.summarize(["a short text", LONG], [4, 6], micro_batch=2) == results


def test_batches_tokenized_on_several_threads_at_once_keep_their_own_truncation_and_padding(classifier):
    """Replicas run two batches side by side (max_concurrent_batches). The fast tokenizer's truncation and
    padding live in its shared Rust backend: unguarded, a batch could be cut with another's settings and fail
    (past the position table, or ragged). Every concurrent answer must equal the one computed alone."""
    from concurrent.futures import ThreadPoolExecutor

    batches = [[LONG[: 40 * (1 + i % 7)], "short", LONG] if i % 2 else ["x y", LONG * 2] for i in range(400)]
    expected = {i: classifier.predict(b) for i, b in enumerate(batches[:14])}
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(classifier.predict, batches))
    for i, got in enumerate(answers):
        want = expected[i % 14]
        assert [r["label"] for r in got] == [r["label"] for r in want]
        assert [r["input_tokens"] for r in got] == [r["input_tokens"] for r in want]


def test_one_tokenizer_pass_gives_what_two_hugging_face_calls_gave(classifier):
    """encode() reads whether a text was cut from its encoding's overflow instead of tokenizing it twice: the
    inputs, the cut flags and the token counts equal Hugging Face's truncated call and an untruncated one."""
    texts = ["short text", LONG, "word " * 30, "word " * 31, "", "x"]  # 32 tokens exactly, then 33
    feed, cut, tokens = classifier.encode(texts)
    tok = classifier.tokenizer
    reference = tok(texts, truncation=True, max_length=32, padding=True, return_tensors="np")
    assert set(feed) == set(reference) and all((feed[k] == reference[k]).all() for k in feed)
    full = [len(ids) for ids in tok(texts)["input_ids"]]
    assert cut == [n > 32 for n in full] and cut[2:4] == [False, True]
    assert tokens == [min(n, 32) for n in full]
