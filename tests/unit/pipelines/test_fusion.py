"""Fusion math, including properties checked with hypothesis."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serve_app.pipelines.fusion import fuse, map_labels, normalise_weights

LABELS = ["a", "b", "c"]


def table(values):
    total = sum(values)
    return {label: v / total for label, v in zip(LABELS, values)}


tables = st.lists(st.floats(0.01, 1.0), min_size=3, max_size=3).map(table)
branch_sets = st.dictionaries(st.sampled_from(["x", "y", "z", "w"]), tables, min_size=2, max_size=4)


@settings(max_examples=200, deadline=None)
@given(branch_sets)
def test_equal_weights_equal_the_mean_and_everything_sums_to_one(branches):
    mean = fuse(branches, "mean")
    weighted = fuse(branches, "weighted_average", {b: 2.5 for b in branches})
    assert weighted["probabilities"] == pytest.approx(mean["probabilities"])
    for method in ("mean", "max", "min", "vote"):
        assert sum(fuse(branches, method)["probabilities"].values()) == pytest.approx(1.0)


@settings(max_examples=200, deadline=None)
@given(branch_sets, st.dictionaries(st.sampled_from(["x", "y", "z", "w"]), st.floats(0.0, 10.0), min_size=4))
def test_averages_lie_within_the_branch_min_and_max(branches, raw_weights):
    weights = {b: raw_weights.get(b, 0.0) for b in branches}
    if sum(weights.values()) <= 0:
        weights = {b: 1.0 for b in branches}
    fused = fuse(branches, "weighted_average", weights)["probabilities"]
    for label in LABELS:
        values = [t[label] for t in branches.values()]
        assert min(values) - 1e-9 <= fused[label] <= max(values) + 1e-9


@settings(max_examples=200, deadline=None)
@given(branch_sets)
def test_vote_does_not_depend_on_branch_order(branches):
    reordered = dict(reversed(list(branches.items())))
    assert fuse(branches, "vote") == fuse(reordered, "vote")


def test_vote_tie_goes_to_higher_mean_probability_then_alphabetical():
    tie = {"x": {"a": 0.6, "b": 0.4}, "y": {"a": 0.45, "b": 0.55}}
    result = fuse(tie, "vote")
    assert result["votes"] == {"a": 1, "b": 1} and result["label"] == "a"  # mean a=0.525 > b=0.475
    even = {"x": {"a": 0.6, "b": 0.4}, "y": {"a": 0.4, "b": 0.6}}
    assert fuse(even, "vote")["label"] == "a"  # same votes, same mean: alphabetical


def test_max_and_min_are_renormalised():
    branches = {"x": {"a": 0.9, "b": 0.1}, "y": {"a": 0.2, "b": 0.8}}
    assert fuse(branches, "max")["probabilities"] == pytest.approx({"a": 0.9 / 1.7, "b": 0.8 / 1.7})
    assert fuse(branches, "min")["probabilities"] == pytest.approx({"a": 0.2 / 0.3, "b": 0.1 / 0.3})


def test_weights_and_labels_are_validated():
    with pytest.raises(ValueError, match="no weight for branches"):
        normalise_weights({"x": 1}, ["x", "y"])
    with pytest.raises(ValueError, match="positive sum"):
        normalise_weights({"x": 0, "y": 0}, ["x", "y"])
    with pytest.raises(ValueError, match="label sets differ"):
        fuse({"x": {"a": 1.0}, "y": {"b": 1.0}}, "mean")
    assert normalise_weights({"x": 1, "y": 3}, ["x", "y"]) == {"x": 0.25, "y": 0.75}
    assert map_labels({"sport": 0.7, "football": 0.2, "tech": 0.1}, {"football": "sport"}) == pytest.approx(
        {"sport": 0.9, "tech": 0.1})
