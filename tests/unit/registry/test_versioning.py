import shutil

from serve_app.registry.versioning import content_hash, manifest


def test_content_hash_depends_on_content_not_location(tmp_path):
    a = tmp_path / "a"
    (a / "sub").mkdir(parents=True)
    (a / "config.json").write_text("{}")
    (a / "sub" / "w.bin").write_bytes(b"\x00" * 10)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    assert content_hash(a) == content_hash(b)
    assert [e["path"] for e in manifest(a)] == ["config.json", "sub/w.bin"]
    (b / "sub" / "w.bin").write_bytes(b"\x00" * 9 + b"\x01")
    assert content_hash(a) != content_hash(b)
    assert content_hash(a).startswith("sha256:") and len(content_hash(a)) == 7 + 64
