"""The bench's generation targets: measured rows give ratios against their targets; a failed run is reported
as not measured (and not met) instead of aborting the bench and losing the classifier figures."""

from serve_app.bench import generation


def test_targets_are_medians_of_the_repeats_against_their_thresholds():
    rows = [{"p5": 3.5, "p10": 1.5, "p11": 0.8}, {"p5": 2.0, "p10": 2.5, "p11": 0.95},
            {"p5": 3.1, "p10": 1.9, "p11": 0.92}]
    by_id = {t["id"]: t for t in generation.targets(rows)}
    assert (by_id["P5"]["value"], by_id["P5"]["met"]) == (3.1, True)
    assert (by_id["P10"]["value"], by_id["P10"]["met"]) == (1.9, True)
    assert (by_id["P11"]["value"], by_id["P11"]["met"]) == (0.92, True)
    assert not {t["id"]: t for t in generation.targets(rows[:2])}["P11"]["met"]  # median 0.875 < 0.9


def test_a_failed_generation_run_is_not_measured_and_not_met():
    table = generation.targets([])
    assert [t["id"] for t in table] == ["P5", "P10", "P11"]
    assert all(t["value"] is None and t["met"] is False for t in table)
