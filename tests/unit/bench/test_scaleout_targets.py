"""The scale-out targets' formulas (S1, S2, S4) on fixed inputs, failures and zeros included."""

from __future__ import annotations

from serve_app.bench.scaleout.__main__ import node_rows
from serve_app.bench.scaleout.ingress import s4_row
from serve_app.bench.scaleout.nodeloss import recovery_s, report

KILL = 100.0


def test_recovery_is_the_first_answer_after_the_last_failure():
    outcomes = [(99.0, 99.1, 200, True), (100.2, 102.0, 503, False), (101.0, 103.5, 503, False),
                (103.0, 103.2, 200, True), (104.0, 104.1, 200, True)]
    assert recovery_s(outcomes, KILL) == 3.2  # sent at 103.0, after the last failure sent at 101.0
    # no failure at all: the first answer to a request sent after the kill
    assert recovery_s([(100.5, 100.7, 200, True)], KILL) == 0.7
    # nothing sent after the kill was answered: not recovered
    assert recovery_s([(100.5, 101.0, 503, False)], KILL) is None


def test_s1_counts_failures_against_the_requests_in_flight_and_refuses_wrong_answers():
    outcomes = [(99.0, 100.5, 503, False), (99.5, 100.6, 503, False), (100.1, 100.2, 200, True)]
    run = report(outcomes, {"at": KILL, "in_flight": 2}, 10.0, "worker0", 4.0)
    assert run["failed"] == 2 and run["wrong"] == 0 and run["S1_met"]
    s1, s2 = node_rows(run)
    assert s1["value"] == 0 and s1["met"] and s2["value"] == 0.2 and s2["met"]
    one_more = report([*outcomes, (101.0, 101.2, 500, False)], {"at": KILL, "in_flight": 2}, 10.0, "w", 4.0)
    assert not node_rows(one_more)[0]["met"]
    wrong = report([*outcomes, (101.0, 101.2, 200, False)], {"at": KILL, "in_flight": 2}, 10.0, "w", 4.0)
    s1 = node_rows(wrong)[0]
    assert wrong["wrong"] == 1 and not s1["met"] and s1["status"] == "not measured"


def test_s2_is_not_measured_when_the_model_never_answered_again():
    run = report([(100.5, 101.0, 503, False)], {"at": KILL, "in_flight": 0}, 10.0, "w", None)
    s2 = node_rows(run)[1]
    assert s2["status"] == "not measured" and not s2["met"]


def sample(rps: float, errors: int = 0) -> dict:
    return {"requests": 100, "errors": errors, "rps": rps}


def test_s4_divides_two_replicas_by_one_and_needs_clean_runs():
    rounds = [{"ingress_1": sample(40), "ingress_2": sample(39)}, {"ingress_1": sample(41), "ingress_2": sample(40)},
              {"ingress_1": sample(40), "ingress_2": sample(36)}]
    row = s4_row({"rounds": rounds})
    assert row["value"] == round(39 / 40, 3) and row["met"] and row["spread"] == [0.9, 0.976]
    rounds[0]["ingress_2"] = sample(80, errors=1)
    row = s4_row({"rounds": rounds})
    assert row["status"] == "not measured" and not row["met"]
    zero = s4_row({"rounds": [{"ingress_1": sample(0), "ingress_2": sample(40)}]})
    assert zero["status"] == "not measured"
