"""The registry on a temporary folder: selectors, aliases, lineage, integrity, safety, concurrency, atomicity."""

from __future__ import annotations

import multiprocessing
import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from serve_app.registry import (
    IntegrityError,
    ModelVersion,
    Registry,
    SelectorError,
    UnsafeArtifactError,
    VersionNotFound,
    parse_selector,
)
from serve_app.registry.versions import resolve


def make_folder(path, content: str = "v1", extra: dict | None = None):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"model_type": "bert"}')
    (path / "model.safetensors").write_bytes(content.encode() * 100)
    for name, data in (extra or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


@pytest.fixture
def reg(tmp_path):
    return Registry(str(tmp_path / "store"), cache_dir=tmp_path / "cache")


def test_iterations_hashes_aliases_and_selectors(reg, tmp_path):
    v1 = reg.register("clf", make_folder(tmp_path / "a", "one"), tags={"team": "nlp"}, metrics={"accuracy": 0.9})
    time.sleep(0.01)
    v2 = reg.register("clf", make_folder(tmp_path / "b", "two"))
    assert (v1.iteration, v2.iteration) == (1, 2)
    assert v1.content_hash != v2.content_hash and v1.content_hash.startswith("sha256:")
    assert v1.created_at.tzinfo is not None and v1.tags == {"team": "nlp"} and v1.metrics == {"accuracy": 0.9}
    assert reg.resolve("clf").iteration == 2 == reg.resolve("clf@latest").iteration
    assert reg.resolve("clf@1") == v1
    assert reg.resolve(f"clf@{v1.content_hash[:11]}") == v1
    assert reg.resolve(f"clf@{v2.created_at.isoformat()}") == v2
    between = (v1.created_at + (v2.created_at - v1.created_at) / 2).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert reg.resolve(f"clf@{between}") == v1
    reg.set_alias("clf", "stable", "1")
    reg.set_alias("clf", "canary", "clf@2")
    assert reg.resolve("clf@stable") == v1 and reg.resolve("clf@canary") == v2
    assert reg.aliases("clf") == {"stable": 1, "canary": 2}
    assert reg.models() == ["clf"]


@pytest.mark.parametrize("selector, error, fragment", [
    ("clf@9", VersionNotFound, "no version"),
    ("clf@sha256:ffff", VersionNotFound, "no version"),
    ("clf@2000-01-01T00:00:00Z", VersionNotFound, "no version"),
    ("clf@prod", VersionNotFound, "no alias 'prod'; known: latest"),
    ("ghost@1", VersionNotFound, "has no versions"),
    ("clf@sha256:xyz", SelectorError, "hex digits"),
    ("clf@2026-13-45T99:00:00Z", SelectorError, "ISO-8601"),
    ("clf@Bad!", SelectorError, "not an iteration"),
    ("../etc@1", SelectorError, "model name"),
    ("/abs@1", SelectorError, "model name"),
])
def test_bad_selectors_fail_clearly(reg, tmp_path, selector, error, fragment):
    reg.register("clf", make_folder(tmp_path / "a"))
    with pytest.raises(error, match=fragment):
        reg.resolve(selector)


def test_ambiguous_hash_prefix_is_refused():
    now = datetime.now(UTC)
    versions = [ModelVersion(name="m", iteration=i, created_at=now, content_hash=f"sha256:abcd{i}{'0' * 59}")
                for i in (1, 2)]
    with pytest.raises(SelectorError, match=r"ambiguous: matches iterations \[1, 2\]"):
        resolve(parse_selector("m@sha256:abcd"), versions, {})
    assert resolve(parse_selector("m@sha256:abcd2"), versions, {}).iteration == 2
    earlier = now - timedelta(days=1)
    with pytest.raises(VersionNotFound, match="no version"):  # nothing existed a day earlier
        resolve(parse_selector(f"m@{earlier.isoformat()}"), versions, {})


def test_reserved_and_malformed_aliases_are_refused(reg, tmp_path):
    reg.register("clf", make_folder(tmp_path / "a"))
    for alias in ("latest", "Bad Alias", "7", "../x"):
        with pytest.raises(SelectorError):
            reg.set_alias("clf", alias, "1")


def test_lineage_is_recorded_and_parents_must_exist(reg, tmp_path):
    reg.register("clf", make_folder(tmp_path / "a", "one"))
    derived = reg.register("clf", make_folder(tmp_path / "b", "int8"), parent=1, transform="int8")
    assert derived.lineage == "int8 of v1" and reg.resolve("clf@2").parent == 1
    with pytest.raises(VersionNotFound, match="parent clf@5"):
        reg.register("clf", make_folder(tmp_path / "c", "x"), parent=5, transform="int4")


def test_pull_caches_by_hash_and_verifies_on_every_load(reg, tmp_path):
    v = reg.register("clf", make_folder(tmp_path / "a", "one"))
    pulled = []
    path = reg.pull("clf@1", on_progress=lambda p, n: pulled.append(p))
    assert sorted(pulled) == ["config.json", "model.safetensors"]
    assert path == reg.cached_path(v) and (path / "model.safetensors").read_bytes() == b"one" * 100
    pulled.clear()
    assert reg.pull("clf@1", on_progress=lambda p, n: pulled.append(p)) == path and pulled == []
    (path / "model.safetensors").write_bytes(b"evil" * 100)  # corrupted after download
    with pytest.raises(IntegrityError, match="refusing to load"):
        reg.pull("clf@1")


def test_corrupt_store_copy_is_refused_and_leaves_no_cache(reg, tmp_path):
    reg.register("clf", make_folder(tmp_path / "a", "one"))
    stored = tmp_path / "store" / "clf" / "versions" / "1" / "files" / "model.safetensors"
    stored.write_bytes(b"two" * 100)
    with pytest.raises(IntegrityError):
        reg.pull("clf@1")
    assert not any((tmp_path / "cache").iterdir())


@pytest.mark.parametrize("extra, fragment", [
    ({"pytorch_model.bin": b"pickle"}, "pickled checkpoints are refused"),
    ({"weights.pt": b"pickle"}, "may not be registered"),
    ({"bad name.json": b"{}"}, "not allowed"),
])
def test_unsafe_artifacts_are_refused_before_anything_is_written(reg, tmp_path, extra, fragment):
    with pytest.raises(UnsafeArtifactError, match=fragment):
        reg.register("clf", make_folder(tmp_path / "a", extra=extra))
    assert reg.versions("clf") == []
    assert not (tmp_path / "store" / "clf" / "claims").exists()


def test_symlinks_are_refused(reg, tmp_path):
    folder = make_folder(tmp_path / "a")
    os.symlink("/etc/passwd", folder / "passwd.txt")
    with pytest.raises(UnsafeArtifactError, match="symbolic link"):
        reg.register("clf", folder)


def test_interrupted_publish_leaves_nothing_and_iterations_are_never_reused(reg, tmp_path):
    def interrupt(path, done):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reg.register("clf", make_folder(tmp_path / "a"), on_progress=interrupt)
    assert reg.versions("clf") == [] and not (tmp_path / "store" / "clf" / "versions" / "1").exists()
    assert reg.register("clf", make_folder(tmp_path / "b", "two")).iteration == 2


def _crash_mid_publish(store, folder):
    reg = Registry(store)
    reg.register("clf", folder, on_progress=lambda p, n: os._exit(3))


def test_a_killed_publisher_leaves_an_invisible_partial_that_gc_removes(reg, tmp_path):
    folder = make_folder(tmp_path / "a")
    proc = multiprocessing.get_context("spawn").Process(target=_crash_mid_publish,
                                                       args=(str(tmp_path / "store"), folder))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 3
    assert (tmp_path / "store" / "clf" / "versions" / "1" / "files").exists()  # bytes were written...
    assert reg.versions("clf") == []  # ...but no version is visible
    assert reg.gc(min_age_s=3600)["store"] == []  # too young: could be a publish in progress
    assert reg.gc(min_age_s=0)["store"] == ["clf/versions/1"]
    assert not (tmp_path / "store" / "clf" / "versions" / "1").exists()


def _register_one(store, folder, queue):
    queue.put(Registry(store).register("clf", folder).iteration)


def test_concurrent_registrations_get_distinct_iterations(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_register_one,
                         args=(str(tmp_path / "store"), make_folder(tmp_path / f"f{i}", f"c{i}"), queue))
             for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert sorted(queue.get(timeout=5) for _ in procs) == [1, 2, 3, 4]
    assert [v.iteration for v in Registry(str(tmp_path / "store")).versions("clf")] == [1, 2, 3, 4]


def test_remove_hides_the_version_drops_its_aliases_and_gc_cleans_the_cache(reg, tmp_path):
    reg.register("clf", make_folder(tmp_path / "a", "one"))
    v2 = reg.register("clf", make_folder(tmp_path / "b", "two"))
    reg.set_alias("clf", "stable", "2")
    cached = reg.pull("clf@2")
    assert reg.remove("clf@2") == v2
    assert [v.iteration for v in reg.versions("clf")] == [1] and reg.aliases("clf") == {}
    assert reg.gc(min_age_s=0)["cache"] == [cached.name] and not cached.exists()
    assert reg.register("clf", make_folder(tmp_path / "c", "three")).iteration == 3


def test_store_uris_fail_clearly_when_unsupported_or_missing_their_client():
    from serve_app.registry import StoreError, open_store

    with pytest.raises(StoreError, match="unsupported store URI"):
        open_store("ftp://host/models")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(StoreError, match="pip install pyarrow"):
            open_store("hdfs://namenode:8020/models")


def test_file_uri_and_plain_path_name_the_same_store(tmp_path):
    a = Registry(f"file://{tmp_path / 's'}", cache_dir=tmp_path / "c")
    a.register("clf", make_folder(tmp_path / "a"))
    assert Registry(str(tmp_path / "s")).resolve("clf").iteration == 1
