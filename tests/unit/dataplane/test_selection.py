"""SLO-aware variant selection, pure: `choose` over candidates, and `LatencyFeed` driven by a fake clock."""

import pytest
from support.fakes import Clock

from serve_app.dataplane.selection import Candidate, LatencyFeed, Requirement, choose, parse_requirement
from serve_app.errors import InvalidInput, Overloaded

FP32, INT8, PRUNED = "1", "2", "3"


def variants(fp32_ms, int8_ms, pruned_ms=None, pruned_gated=True):
    return [Candidate(FP32, 95.0, True, fp32_ms), Candidate(INT8, 94.6, True, int8_ms),
            Candidate(PRUNED, 93.0, pruned_gated, pruned_ms)]


def test_the_most_accurate_variant_that_fits_the_budget_answers():
    assert choose(variants(80, 40, 20), Requirement(budget_ms=100)).label == FP32
    assert choose(variants(150, 40, 20), Requirement(budget_ms=100)).label == INT8
    picked = choose(variants(150, 120, 20), Requirement(budget_ms=100))
    assert (picked.label, picked.reason, picked.met) == (PRUNED, "fits", True)


def test_no_fit_gets_the_fastest_flagged_or_a_429_when_configured_to_refuse():
    picked = choose(variants(300, 200, 150), Requirement(budget_ms=100))
    assert (picked.label, picked.reason, picked.met) == (PRUNED, "over_budget", False)
    with pytest.raises(Overloaded, match="within 100 ms") as refused:
        choose(variants(300, 200, 150), Requirement(budget_ms=100), refuse_unmet=True)
    assert refused.value.details["retry_after_s"] == pytest.approx(0.05)


def test_the_answer_reports_whether_the_budget_was_met_as_measured_not_as_expected():
    need = Requirement(budget_ms=100)
    probe = choose(variants(300, 200, None), need)  # the pruned variant has no estimate: probed, no expectation
    assert (probe.label, probe.reason) == (PRUNED, "probe")
    assert probe.as_dict(need, answered_s=0.250)["budget_met"] is False
    assert probe.as_dict(need, answered_s=0.250)["answered_ms"] == 250.0
    late = choose(variants(300, 200, 150), need)  # expected over budget, and then in time after all
    assert late.as_dict(need, answered_s=0.080) | {"expected_ms": None} == {
        "variant": PRUNED, "reason": "over_budget", "budget_met": True, "answered_ms": 80.0, "expected_ms": None}
    floor_only = choose(variants(80, 40, 20), Requirement(min_accuracy=94))  # no budget: nothing to measure
    assert floor_only.as_dict(Requirement(min_accuracy=94), answered_s=9.0)["budget_met"] is True


def test_a_variant_that_failed_its_gate_is_never_chosen():
    # The ungated variant is the only one that fits, and the fastest when none fits: still never chosen.
    assert choose(variants(300, 200, 10, pruned_gated=False), Requirement(budget_ms=100)).label == INT8
    assert choose(variants(150, 120, 10, pruned_gated=False), Requirement(budget_ms=100)).label == INT8
    with pytest.raises(InvalidInput, match="no gated variant"):
        choose([Candidate("9", 99.0, False, 1.0)], Requirement(budget_ms=100))


def test_an_accuracy_floor_keeps_less_accurate_variants_out():
    picked = choose(variants(300, 200, 20), Requirement(budget_ms=100, min_accuracy=94.5))
    assert (picked.label, picked.met) == (INT8, False)  # the pruned one would fit but is below the floor
    assert choose(variants(80, 40, 20), Requirement(min_accuracy=94)).label == INT8  # floor only: the fastest
    with pytest.raises(InvalidInput, match="most accurate loaded variant has 95") as err:
        choose(variants(80, 40, 20), Requirement(min_accuracy=99))
    assert err.value.details["field"] == "min_accuracy"


def test_unmeasured_variants_are_probed():
    picked = choose(variants(150, None, 20), Requirement(budget_ms=100))
    assert (picked.label, picked.reason) == (INT8, "probe")
    assert choose(variants(10, 10, None), Requirement(min_accuracy=90)).reason == "probe"


@pytest.mark.parametrize("needs, field", [
    ({"latency_budget_ms": "fast"}, "latency_budget_ms"), ({"latency_budget_ms": "-5"}, "latency_budget_ms"),
    ({"latency_budget_ms": "nan"}, "latency_budget_ms"), ({"latency_budget_ms": True}, "latency_budget_ms"),
    ({"min_accuracy": "101"}, "min_accuracy"), ({"min_accuracy": [90]}, "min_accuracy"),
])
def test_malformed_requirements_are_400s_naming_the_field(needs, field):
    with pytest.raises(InvalidInput) as err:
        parse_requirement(needs)
    assert err.value.details["field"] == field and field in str(err.value)


def test_requirements_parse_from_headers_and_numbers():
    assert parse_requirement({}) is None
    assert parse_requirement({"latency_budget_ms": " 150 ", "min_accuracy": 90}) == Requirement(150.0, 90.0)


def feed_answer(feed, clock, label, seconds):
    ticket = feed.start(label)
    clock.now += seconds
    feed.finish(label, ticket)


def test_traffic_moves_when_a_variant_slows_down_and_comes_back_when_it_recovers():
    clock = Clock()
    feed = LatencyFeed(clock, smoothing=0.5, stale_s=2.0)

    def pick():
        cands = [Candidate(FP32, 95.0, True, feed.expected_ms(FP32)),
                 Candidate(INT8, 94.6, True, feed.expected_ms(INT8))]
        return choose(cands, Requirement(budget_ms=100)).label

    feed_answer(feed, clock, FP32, 0.06)
    feed_answer(feed, clock, INT8, 0.03)
    assert pick() == FP32
    for _ in range(4):  # fp32 slows down (its replica shares a busy node): 200 ms per answer
        feed_answer(feed, clock, FP32, 0.2)
    assert feed.expected_ms(FP32) > 100 and pick() == INT8
    clock.now += 3  # no answer from fp32 since: its estimate is stale, so it is probed again
    assert feed.expected_ms(FP32) is None and pick() == FP32
    feed_answer(feed, clock, FP32, 0.05)
    assert pick() == FP32


def test_expected_latency_grows_with_the_calls_a_variant_holds():
    clock = Clock()
    feed = LatencyFeed(clock)
    feed_answer(feed, clock, FP32, 0.04)
    assert feed.expected_ms(FP32) == pytest.approx(40)
    tickets = [feed.start(FP32) for _ in range(3)]  # three calls in flight: a fourth waits behind them
    assert feed.expected_ms(FP32) == pytest.approx(160)
    clock.now += 0.3
    for t in tickets:
        feed.finish(FP32, t, ok=False)  # failures teach nothing
    assert feed.expected_ms(FP32) == pytest.approx(40)
