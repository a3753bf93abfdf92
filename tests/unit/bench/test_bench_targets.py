"""The bench's generation targets: measured rows give ratios against their targets; a failed run, or a ratio
whose denominator was missing or zero in any repeat, is reported as not measured (and not met)."""

from serve_app.bench import generation
from serve_app.bench.generation.clients import Run
from serve_app.bench.generation.measure import _row

IDS = ["G1", "G2", "G3", "G4", "P5", "P10", "P11"]


def test_targets_are_medians_of_the_repeats_against_their_thresholds():
    rows = [{"p5": 3.5, "p10": 1.5, "p11": 0.8, "g3": 2.0}, {"p5": 2.0, "p10": 2.5, "p11": 0.95, "g3": 1.7},
            {"p5": 3.1, "p10": 1.9, "p11": 0.92, "g3": 1.9}]
    by_id = {t["id"]: t for t in generation.targets(rows)}
    assert (by_id["P5"]["value"], by_id["P5"]["met"], by_id["P5"]["spread"]) == (3.1, True, [2.0, 3.5])
    assert (by_id["P10"]["value"], by_id["P10"]["met"]) == (1.9, True)
    assert (by_id["P11"]["value"], by_id["P11"]["met"]) == (0.92, True)
    assert (by_id["G3"]["value"], by_id["G3"]["met"]) == (1.9, True)
    assert by_id["G1"]["value"] is None and not by_id["G1"]["met"]  # never measured: not met
    assert not {t["id"]: t for t in generation.targets(rows[:2])}["P11"]["met"]  # median 0.875 < 0.9


def test_a_missing_ratio_in_one_repeat_makes_the_target_not_measured():
    rows = [{"g4": 1.0}, {"g4": None}, {"g4": 1.0}]
    g4 = {t["id"]: t for t in generation.targets(rows)}["G4"]
    assert g4["value"] is None and g4["met"] is False


def test_a_failed_generation_run_is_not_measured_and_not_met():
    table = generation.targets([])
    assert [t["id"] for t in table] == IDS
    assert all(t["value"] is None and t["met"] is False for t in table)


def test_a_repeat_row_divides_the_gateway_by_each_peer():
    def run(tokens, seconds, ttft, concurrency=1):
        return Run(tokens, seconds, {i: ttft for i in range(2 * concurrency)}, concurrency)

    runs = {"gateway_c1": run(60, 1.0, 0.40), "llama_c1": run(60, 1.2, 0.42), "torch_c1": run(60, 3.0, 0.35),
            "gateway_c8": run(600, 5.0, 0.70, 8), "inproc_c8": run(600, 4.8, 0.6, 8), "torch_c8": run(600, 10.0, 1, 8)}
    row = _row(runs, 8)
    assert round(row["g1"], 3) == 1.2 and round(row["g2"], 3) == round(120 / 125, 3)
    assert round(row["g3"], 3) == 2.0 and round(row["g4"], 3) == round(0.40 / 0.35, 3)
    assert round(row["p5"], 3) == 2.0 and round(row["p10"], 3) == 1.75
    zero = _row({**runs, "llama_c1": run(0, 1.0, 0.4)}, 8)  # a peer that generated nothing
    assert zero["g1"] is None
    # With vLLM standalone beside them, G2 and G4 divide by the best of the peers.
    faster = _row({**runs, "vllm_c1": run(60, 1.1, 0.30), "vllm_c8": run(600, 4.0, 0.5, 8)}, 8)
    assert round(faster["g2"], 3) == round(120 / 150, 3) and round(faster["g4"], 3) == round(0.40 / 0.30, 3)
    slower = _row({**runs, "vllm_c1": run(60, 2.0, 0.50), "vllm_c8": run(600, 9.0, 0.9, 8)}, 8)
    assert slower["g2"] == row["g2"] and slower["g4"] == row["g4"]
