"""What only the llama.cpp engine does: prompt reuse across sequences in a slot's cache, and a sequence that
cannot fit its context failing alone."""

from __future__ import annotations

import pytest
from support.fakes import Collector

from serve_app.dataplane.generation import SamplingParams
from serve_app.runtime.engines import Sequence

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make venv builds it)")


@pytest.fixture(scope="module")
def summarizer(tiny_models):
    from serve_app.runtime.gguf_summarizer import GgufSummarizer

    return GgufSummarizer(tiny_models / "tiny-gguf", max_length=64, threads=1, context_per_sequence=256)


@pytest.fixture
def engine(summarizer):
    engine = summarizer.start_engine(max_running=2, prefill_chunk=16, reuse_prompts=True)
    yield engine
    engine.close()


def test_without_prompt_cache_every_prompt_is_prefilled_whole(summarizer):
    engine = summarizer.start_engine(max_running=2, prefill_chunk=16, reuse_prompts=False)
    try:
        ids = summarizer.summary_prompt("The central bank raised rates again on Tuesday.")[0]
        first, second = run(engine, ids, 8), run(engine, ids, 8)
        assert engine.stats()["prompt_tokens_reused"] == 0 and first["text"] == second["text"]
    finally:
        engine.close()


def run(engine, ids, n):
    sink = Collector()
    engine.submit(Sequence(ids, SamplingParams(n), sink))
    return sink.wait()


def test_a_prompt_sharing_a_prefix_with_a_slot_cache_prefills_only_the_rest(summarizer, engine):
    first = summarizer.summary_prompt("The central bank raised rates again on Tuesday.")[0]
    second = summarizer.summary_prompt("The striker scored twice in the cup final.")[0]
    shared = next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)
    assert shared > 10  # the chat template and system prompt
    cold = run(engine, first, 8)
    assert engine.stats()["prompt_tokens_reused"] == 0
    run(engine, second, 8)
    reused = engine.stats()["prompt_tokens_reused"]
    assert reused >= shared
    warm = run(engine, first, 8)  # the same prompt again: all but its last token come from a cache
    assert engine.stats()["prompt_tokens_reused"] - reused >= shared
    assert warm["text"] == cold["text"]


def test_a_cached_prompt_prefilled_in_chunks_beside_a_decoding_stream_answers_as_a_fresh_one(summarizer):
    """The engine's default reuses prompts; that must not change an answer. The same prompt, cold and alone, then
    warm (from a slot's cache) in 16-token chunks while another sequence decodes in the same batches."""
    ids = summarizer.summary_prompt("Shares in the retailer fell after a weak Christmas.")[0]
    other = summarizer.summary_prompt("The band announced a world tour for next spring.")[0]
    engine = summarizer.start_engine(max_running=2, prefill_chunk=16)
    try:
        cold = run(engine, ids, 24)
        busy = Collector()
        engine.submit(Sequence(other, SamplingParams(40), busy))
        warm = run(engine, ids, 24)
        assert engine.stats()["prompt_tokens_reused"] > 0
        assert warm["text"] == cold["text"] and warm["completion_tokens"] == cold["completion_tokens"]
        busy.wait()
    finally:
        engine.close()


def test_with_flash_attention_every_prompt_piece_is_a_whole_tile_one_per_step(summarizer):
    """llama.cpp's CPU flash attention takes another kernel (other rounding) below 64 queries of a sequence in a
    ubatch, so with it on the engine never feeds a prompt piece smaller than that, nor two prompts in one step, and
    reuses a cache only as far as it leaves a tile to prefill."""
    from serve_app.runtime.engines.llamacpp_engine import FA_TILE

    long_ = (summarizer.summary_prompt("Markets rallied on Monday.")[0] * 10)[:180]
    other = summarizer.summary_prompt("Rain is expected across the north on Friday.")[0]
    engine = summarizer.start_engine(max_running=3, prefill_chunk=128)
    plans = []
    plan = engine._plan

    def recorded():
        feed = plan()
        plans.append({k: len(v) for k, v in feed.items() if len(v) > 1 or not engine.slots[k].seq.generated})
        return feed

    engine._plan = recorded
    try:
        assert engine.flash_attention
        busy = Collector()
        engine.submit(Sequence(other, SamplingParams(60), busy))
        first, second = Collector(), Collector()
        engine.submit(Sequence(long_, SamplingParams(4), first))
        first.wait()
        engine.submit(Sequence(long_[:150], SamplingParams(4), second))
        second.wait(), busy.wait()
        pieces = [n for p in plans for n in p.values()]
        assert all(len(p) <= 1 for p in plans)
        assert all(n >= FA_TILE or n == len(other) for n in pieces), pieces
        # The second prompt is the first's first 150 tokens: all but a tile of them come from the first's cache.
        assert engine.stats()["prompt_tokens_reused"] == 150 - FA_TILE
    finally:
        engine.close()


def test_a_sequence_too_long_for_its_context_fails_alone(summarizer, engine):
    ok = summarizer.summary_prompt("A new film opened to strong reviews at the weekend.")[0]
    good, bad = Collector(), Collector()
    engine.submit(Sequence(ok, SamplingParams(20), good))
    engine.submit(Sequence(list(ok) * 4, SamplingParams(200), bad))  # > 256 positions with its answer
    assert bad.wait()["finish_reason"] == "error" and bad.wait()["completion_tokens"] == 0
    done = good.wait()
    assert done["finish_reason"] == "length" and done["completion_tokens"] == 20
