import pytest

from serve_app.runtime.processing import (
    chunks,
    classification_result,
    cut_generation,
    flatten,
    summary_messages,
    unflatten,
)


def test_flatten_then_unflatten_gives_each_request_its_own_results_in_order():
    requests = [["a", "b"], ["c"], ["d", "e", "f"]]
    flat, sizes = flatten(requests)
    assert flat == ["a", "b", "c", "d", "e", "f"] and sizes == [2, 1, 3]
    assert unflatten([s.upper() for s in flat], sizes) == [["A", "B"], ["C"], ["D", "E", "F"]]


def test_unflatten_refuses_a_count_mismatch():
    with pytest.raises(ValueError, match="2 results for 3 inputs"):
        unflatten([1, 2], [1, 2])


def test_chunks_bound_micro_batches():
    assert [list(c) for c in chunks(list(range(7)), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError):
        chunks([1], 0)


def test_classification_result_picks_the_most_probable_label():
    r = classification_result([0.1, 0.7, 0.2], ["a", "b", "c"], truncated=True, tokens=12)
    assert r["label"] == "b" and r["score"] == pytest.approx(0.7)
    assert r["probabilities"] == pytest.approx({"a": 0.1, "b": 0.7, "c": 0.2})
    assert r["truncated"] is True and r["input_tokens"] == 12
    with pytest.raises(ValueError):
        classification_result([0.5, 0.5], ["a"], False, 1)


def test_cut_generation_stops_at_stop_token_or_own_limit():
    assert cut_generation([5, 6, 2, 7], 10, {2}) == ([5, 6], "stop")
    assert cut_generation([5, 6, 7, 8], 3, {2}) == ([5, 6, 7], "length")
    # A stop token past the request's own limit does not count: it was generated for a longer neighbour.
    assert cut_generation([5, 6, 7, 2], 3, {2}) == ([5, 6, 7], "length")


def test_summary_prompt_carries_the_article():
    msgs = summary_messages("The article text.")
    assert msgs[-1]["role"] == "user" and msgs[-1]["content"].endswith("The article text.")
