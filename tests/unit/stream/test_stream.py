"""The Flink-free parts of the stream job: record parsing and dead-letter reasons, Retry-After, micro-batching
and the enricher's retry / split / deadline behaviour against a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import json

import pytest
from support.servers import FakeGateway

from serve_app.stream.enrich import GatewayEnricher
from serve_app.stream.options import parse
from serve_app.stream.outputs import Tally
from serve_app.stream.records import (
    DEADLINE_EXCEEDED,
    INVALID_JSON,
    MISSING_FIELD,
    NOT_AN_OBJECT,
    REJECTED,
    Record,
    Schema,
    line_key,
    parse_line,
)
from serve_app.stream.retry import RetryPolicy, retry_after_seconds


@pytest.mark.parametrize("line, reason", [("{oops", INVALID_JSON), ("[1]", NOT_AN_OBJECT), ("42", NOT_AN_OBJECT),
                                          ('{"id": 1}', MISSING_FIELD), ('{"id": 1, "text": null}', MISSING_FIELD),
                                          ('{"id": 1, "text": ["a"]}', MISSING_FIELD)])
def test_bad_lines_become_dead_letters_naming_the_reason(line, reason):
    letter = parse_line(line)
    assert isinstance(letter, dict) and letter["reason"] == reason and letter["record"] == line
    assert letter["error"]


def test_records_keep_their_key_or_get_a_stable_one():
    assert parse_line('{"id": 7, "text": "hello"}') == Record("7", "hello")
    assert parse_line('{"doc": "a", "body": "hi"}', Schema(text_field="body", key_field="doc")) == Record("a", "hi")
    keyless = '{"text": "no key"}'
    assert parse_line(keyless).key == line_key(keyless) == parse_line(keyless).key


def test_retry_after_is_honoured_for_429_and_503_and_capped():
    policy = RetryPolicy(max_retry_after_s=5)
    assert policy.delay(1, 429, "2") == 2 and policy.delay(3, 503, "0.5") == 0.5
    assert policy.delay(1, 429, "3600") == 5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0  # a date in the past: now
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    # Without a usable header: capped exponential back-off with jitter.
    for attempt in range(1, 12):
        assert 0 < policy.delay(attempt, 502) <= policy.max_backoff_s
    assert policy.is_transient(None) and policy.is_transient(429) and not policy.is_transient(400)


def test_options_refuse_what_cannot_run(tmp_path):
    with pytest.raises(SystemExit):
        parse(["--out", str(tmp_path)])  # no source
    with pytest.raises(SystemExit):
        parse(["--source", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        parse(["--source", str(tmp_path), "--out", str(tmp_path), "--edge-bundle", str(tmp_path)])
    args = parse(["--source", str(tmp_path), "--out", str(tmp_path), "--watch", "1"])
    assert args.watch == 1 and args.target == "classify"


async def run_enricher(gateway: FakeGateway, texts: list[str], **kw):
    async with gateway.serving() as url:
        enricher = GatewayEnricher(url, model="m", retry=RetryPolicy(base_s=0.01), **kw)
        try:
            await enricher.start()
            return enricher, await asyncio.gather(*(enricher.enrich(Record(str(i), t)) for i, t in enumerate(texts)))
        finally:
            await enricher.close()


def test_records_go_in_batches_of_the_models_size_and_each_gets_its_answer():
    gateway = FakeGateway()
    enricher, out = asyncio.run(run_enricher(gateway, [f"t{i}" for i in range(10)]))
    assert enricher.batch_size == 4 and gateway.sizes == [4, 4, 2]
    assert [o["result"]["label"] for o in out] == [f"T{i}" for i in range(10)]
    assert {(o["model"], o["version"], o["mode"]) for o in out} == {("m", "3", "gateway")}


def test_429s_are_retried_and_only_the_rejected_record_is_dead_lettered():
    gateway = FakeGateway(first_429s=2)
    enricher, out = asyncio.run(run_enricher(gateway, ["a", "b", " ", "d"]))
    by_key = {o["key"]: o for o in out}
    assert by_key["2"]["reason"] == REJECTED and by_key["2"]["status"] == 400
    assert "text is empty" in by_key["2"]["error"]
    assert [by_key[k]["result"]["label"] for k in "013"] == ["A", "B", "D"]
    assert enricher.stats.retries == 8 and enricher.stats.dead_letters == 1 and enricher.stats.records_out == 3


def test_a_gateway_that_never_answers_dead_letters_at_the_deadline():
    async def go():
        enricher = GatewayEnricher("http://127.0.0.1:1", batch_size=2, deadline_s=0.3,
                                   retry=RetryPolicy(base_s=0.01, max_backoff_s=0.05))
        await enricher.start()
        try:
            return await asyncio.gather(enricher.enrich(Record("k", "text")))
        finally:
            await enricher.close()

    [letter] = asyncio.run(go())
    assert letter["reason"] == DEADLINE_EXCEEDED and "connection failed" in letter["error"]


def test_the_tally_reads_committed_part_files_only(tmp_path):
    results = tmp_path / "results" / "2026-01-01--00"
    results.mkdir(parents=True)
    (results / "result-a-0.jsonl").write_text(json.dumps({"key": "1"}) + "\n" + json.dumps({"key": "2"}) + "\n")
    (results / ".result-a-1.jsonl.inprogress.x").write_text(json.dumps({"key": "3"}) + "\n")
    (results / "result-a-2.jsonl").write_text(json.dumps({"key": "2"}) + "\n")
    tally = Tally.of(tmp_path)
    assert tally.keys() == {"1", "2"} and tally.duplicates() == 1 and tally.lost({"1", "3"}) == {"3"}
