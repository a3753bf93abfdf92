"""The response cache, pure: hits, misses, LRU eviction under a byte bound, TTL, per-version key spaces."""

import pytest
from support.fakes import Clock

from serve_app.dataplane.cache import ResponseCache, request_key

ANSWER = {"version": "1", "results": [{"label": "sport", "score": 0.9}]}


def test_a_hit_returns_a_copy_of_the_answer_and_a_miss_none():
    cache = ResponseCache(10_000, 60, Clock())
    key = request_key("sha256:aa", ["a text"], {})
    assert cache.get(key) is None
    assert cache.put(key, ANSWER)
    hit = cache.get(key)
    assert hit == ANSWER
    hit["results"].clear()  # the caller owns what it got: the stored answer is unchanged
    assert cache.get(key) == ANSWER


def test_keys_differ_by_version_inputs_and_parameters_and_ignore_parameter_order():
    base = request_key("sha256:aa", ["t"], {"a": 1, "b": 2})
    assert base == request_key("sha256:aa", ["t"], {"b": 2, "a": 1})
    others = [request_key("sha256:bb", ["t"], {"a": 1, "b": 2}), request_key("sha256:aa", ["u"], {"a": 1, "b": 2}),
              request_key("sha256:aa", ["t"], {"a": 1, "b": 3}), request_key("sha256:aa", ["t", "t"], {"a": 1, "b": 2})]
    assert len({base, *others}) == 5


def test_least_recently_used_entries_go_first_and_the_byte_bound_holds():
    cache = ResponseCache(1_000, 60, Clock())
    keys = [request_key("sha256:aa", [f"text {i}"], {}) for i in range(20)]
    cache.put(keys[0], ANSWER)
    size = cache.bytes
    capacity = 1_000 // size
    for key in keys[1:capacity]:
        cache.put(key, ANSWER)
    cache.get(keys[0])  # used again: the oldest untouched entry is keys[1] now
    cache.put(keys[capacity], ANSWER)
    assert cache.bytes <= 1_000 and cache.evictions == 1
    assert cache.get(keys[0]) is not None and cache.get(keys[1]) is None
    assert not cache.put(request_key("sha256:aa", ["big"], {}), {"results": ["x" * 2_000]})  # larger than all
    assert not cache.put(request_key("sha256:aa", ["odd"], {}), {"results": [{1, 2}]})  # not JSON: not kept


def test_entries_expire_after_the_ttl():
    clock = Clock()
    cache = ResponseCache(10_000, 5, clock)
    key = request_key("sha256:aa", ["t"], {})
    cache.put(key, ANSWER)
    clock.now += 4.9
    assert cache.get(key) is not None
    clock.now += 0.2
    assert cache.get(key) is None and cache.bytes == 0


def test_dropping_a_version_keeps_the_others():
    cache = ResponseCache(10_000, 60, Clock())
    old, new = request_key("m@sha256:aa", ["t"], {}), request_key("m@sha256:bb", ["t"], {})
    cache.put(old, ANSWER)
    cache.put(new, {**ANSWER, "version": "2"})
    assert cache.drop_version("m@sha256:aa") == 1
    assert cache.get(old) is None and cache.get(new)["version"] == "2"


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError):
        ResponseCache(0, 1)
