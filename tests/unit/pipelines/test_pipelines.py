"""Pipeline validation and execution over an in-process fake `call` (no Ray)."""

import asyncio
import time

import pytest
from support.fakes import FakeModels

from serve_app.errors import DeadlineExceeded
from serve_app.pipelines.engine import BranchesFailed, run_pipeline, windows
from serve_app.pipelines.spec import Pipeline
from serve_app.pipelines.validate import PipelineError, check_pipelines

TASKS = {"summarizer": "summarization", "classifier": "classification", "clf2": "classification",
         "echo": "identity"}


def pipe(name, graph):
    return Pipeline.model_validate({"name": name, "graph": graph})


def model(name, **kw):
    return {"type": "model", "model": name, **kw}


SUMMARIZE_THEN_CLASSIFY = pipe("stc", {"type": "chain", "steps": [
    {"node": model("summarizer")}, {"node": model("classifier"), "input": "summary"}]})


@pytest.mark.parametrize("pipelines, fragment", [
    ([pipe("p", model("ghost"))], "pipeline 'p', node 'graph': unknown model 'ghost'"),
    ([pipe("p", {"type": "chain", "steps": [{"node": model("classifier")},
                                            {"node": model("summarizer"), "input": "label"}]})],
     "node 'graph.steps[1]': feeds 'label' (label) to a step that takes text"),
    ([pipe("p", {"type": "chain", "steps": [{"node": model("classifier")},
                                            {"node": model("summarizer"), "input": "summary"}]})],
     "input field 'summary' is not produced"),
    ([pipe("p", {"type": "fuse", "method": "mean", "source": {"type": "fanout", "branches": {
        "a": model("summarizer"), "b": model("classifier")}}})],
     "node 'graph.source.branches.a': cannot fuse"),
    ([pipe("p", {"type": "fuse", "method": "weighted_average", "weights": {"a": 1, "b": 0},
                 "source": {"type": "fanout", "branches": {"a": model("classifier"), "b": model("clf2")}}})],
     None),
    ([pipe("p", {"type": "fuse", "method": "weighted_average", "weights": {"a": 0, "b": 0},
                 "source": {"type": "fanout", "branches": {"a": model("classifier"), "b": model("clf2")}}})],
     "bad weights: weights must have a positive sum"),
    ([pipe("p", {"type": "fuse", "method": "weighted_average", "weights": {"a": 1},
                 "source": {"type": "fanout", "branches": {"a": model("classifier"), "b": model("clf2")}}})],
     "no weight for branches ['b']"),
    ([pipe("p", {"type": "pipeline", "pipeline": "q"}), pipe("q", {"type": "pipeline", "pipeline": "p"})],
     "cycle: p -> q -> p"),
    ([pipe("p", {"type": "pipeline", "pipeline": "zzz"})], "unknown pipeline 'zzz'"),
    ([pipe("p", {"type": "split", "mode": "serial", "node": model("echo")})], "joins summaries or probabilities"),
    ([pipe("p", {"type": "split", "mode": "serial", "window_chars": 200, "overlap_chars": 200,
                 "node": model("summarizer")})], "overlap_chars must be smaller"),
    ([pipe("p", {"type": "fanout", "min_success": 1, "branches": {"a": model("echo"), "b": model("echo")}})],
     "min_success applies to policy 'best_effort'"),
    ([pipe("classifier", model("echo"))], "share names"),
])
def test_validation_names_pipeline_and_node(pipelines, fragment):
    if fragment is None:
        check_pipelines(pipelines, TASKS)
        return
    with pytest.raises(PipelineError) as err:
        check_pipelines(pipelines, TASKS)
    assert fragment in str(err.value)


def run(pipelines, name, texts, models=None):
    models = models or FakeModels()
    return asyncio.run(run_pipeline({p.name: p for p in pipelines}, models, name, texts)), models


def test_chain_maps_summary_into_the_classifier_and_keeps_both():
    (records, trace), models = run([SUMMARIZE_THEN_CLASSIFY], "stc", ["late goal wins the cup final", "new chip"])
    assert records[0]["summary"] == "late goal wins" and records[0]["label"] == "sport"
    assert records[1]["label"] == "tech" and records[1]["text"] == "new chip"
    assert models.calls == [("summarizer", ["late goal wins the cup final", "new chip"]),
                            ("classifier", ["late goal wins", "new chip"])]
    assert [e["node"] for e in trace] == ["graph.steps[0]", "graph.steps[1]", "graph"]
    assert trace[0]["model"] == "summarizer" and trace[0]["version"] == "1" and trace[0]["latency_ms"] >= 0


def test_windows_overlap_cover_the_text_and_keep_order():
    text = " ".join(f"w{i:03d}" for i in range(300))  # 1,499 characters
    parts = windows(text, 200, 40)
    assert all(len(p) <= 200 for p in parts) and len(parts) > 7
    assert parts[0].startswith("w000") and parts[-1].endswith("w299")
    words = [w for p in parts for w in p.split()]
    assert sorted(set(words)) == text.split()  # nothing lost
    assert len(words) > 300  # windows overlap
    assert windows("short", 200, 40) == ["short"]


def test_serial_split_joins_in_order_then_reduces():
    p = pipe("long", {"type": "split", "mode": "serial", "window_chars": 100, "overlap_chars": 0,
                      "node": model("summarizer"), "reduce": model("summarizer")})
    doc = " ".join(f"part{i} alpha beta gamma delta epsilon zeta eta theta iota kappa" for i in range(5))
    (records, _), models = run([p], "long", [doc])
    partial = records[0]["partial_summary"]
    assert partial.split()[0] == "part0" and records[0]["windows"] == len(models.calls[0][1]) > 1
    order = [w for w in partial.split() if w.startswith("part")]
    assert order == sorted(order)
    assert records[0]["summary"] == " ".join(partial.split()[:3])


def test_parallel_split_reassembles_the_batch_in_order():
    p = pipe("par", {"type": "split", "mode": "parallel", "chunk_size": 2, "node": model("echo")})
    texts = [f"t{i}" for i in range(7)]
    (records, trace), models = run([p], "par", texts)
    assert [r["text"] for r in records] == texts
    assert len(models.calls) == 4 and {e["node"] for e in trace} >= {"graph.chunk[0]", "graph.chunk[3]"}


def fanout(policy="fail_fast", min_success=None, **branches):
    node = {"type": "fanout", "policy": policy, "branches": {k: model(v) for k, v in branches.items()}}
    if min_success:
        node["min_success"] = min_success
    return node


def test_fuse_weighted_average_over_a_fanout():
    p = pipe("ens", {"type": "fuse", "method": "weighted_average", "weights": {"a": 3, "b": 1},
                     "source": fanout(a="classifier", b="clf2")})
    (records, trace), _ = run([p], "ens", ["a goal"])
    assert records[0]["label"] == "sport"
    assert records[0]["probabilities"]["sport"] == pytest.approx(0.75 * 0.9 + 0.25 * 0.6)
    assert {e.get("version") for e in trace if e["type"] == "model"} == {"1", "2"}


def test_fanout_branches_run_concurrently():
    p = pipe("fan", fanout(a="slow", b="slow", c="slow"))
    t0 = time.perf_counter()
    (records, _), _ = run([p], "fan", ["x"])
    assert time.perf_counter() - t0 < 1.0  # three 0.5 s branches, concurrently
    assert set(records[0]["branches"]) == {"a", "b", "c"}


def test_fail_fast_and_best_effort_policies():
    with pytest.raises(Exception, match="boom"):
        run([pipe("ff", fanout(a="classifier", b="broken"))], "ff", ["x"])
    (records, _), _ = run([pipe("be", fanout("best_effort", 1, a="classifier", b="broken"))], "be", ["x"])
    assert set(records[0]["branches"]) == {"a"} and records[0]["failed_branches"] == {"b": "failed"}
    with pytest.raises(BranchesFailed, match="1 of 2 branches succeeded, 2 needed") as err:
        run([pipe("be2", fanout("best_effort", 2, a="classifier", b="broken"))], "be2", ["x"])
    assert err.value.details["failed_branches"] == {"b": "failed"}


def test_node_timeout_names_the_node():
    p = pipe("t", {"type": "chain", "steps": [{"node": model("echo")},
                                              {"node": {**model("slow"), "timeout_s": 0.05}}]})
    with pytest.raises(DeadlineExceeded, match="pipeline 't', node 'graph.steps\\[1\\]' timed out after 0.05 s"):
        run([p], "t", ["x"])


def test_pipeline_reference_runs_the_other_graph():
    p = pipe("outer", {"type": "pipeline", "pipeline": "stc"})
    (records, trace), _ = run([SUMMARIZE_THEN_CLASSIFY, p], "outer", ["a goal at last"])
    assert records[0]["label"] == "sport" and any("<stc>" in e["node"] for e in trace)
