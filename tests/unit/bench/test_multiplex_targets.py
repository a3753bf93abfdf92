"""T1's formula from fixed inputs: multiplexed RSS ÷ separate RSS, judged only on a clean run."""

from serve_app.bench.multiplex import t1_row


def layout(rss_mb: float, replicas: int, failed: int = 0, wrong: int = 0) -> dict:
    return {"calls": 32, "failed": failed, "wrong": wrong, "memory": {"replicas": replicas, "rss_mb": rss_mb}}


def test_t1_divides_the_multiplexed_memory_by_the_separate_one():
    row = t1_row({"multiplexed": layout(1500, 2), "separate": layout(4000, 8)})
    assert row["value"] == 0.375 and row["met"] and row["status"] == "met"
    row = t1_row({"multiplexed": layout(2400, 2), "separate": layout(4000, 8)})
    assert row["value"] == 0.6 and not row["met"] and row["status"] == "missed"


def test_t1_is_not_measured_when_a_call_failed_an_answer_was_wrong_or_a_layout_is_missing_replicas():
    for run in ({"multiplexed": layout(1500, 2, failed=1), "separate": layout(4000, 8)},
                {"multiplexed": layout(1500, 2), "separate": layout(4000, 8, wrong=2)},
                {"multiplexed": layout(1500, 2), "separate": layout(3000, 7)},
                {"multiplexed": layout(1500, 2), "separate": layout(0, 8)}):
        row = t1_row(run)
        assert row["status"] == "not measured" and not row["met"], row
