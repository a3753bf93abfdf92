"""Stores by URI through fsspec: local paths and file://, s3:// (s3fs), hdfs:// and webhdfs://."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import fsspec
from fsspec import AbstractFileSystem

from serve_app.registry.errors import StoreError, UnsafeArtifactError

# One path segment: a name or file name inside the store. No separators, no "..", no control characters.
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Store:
    fs: AbstractFileSystem
    root: str  # path inside `fs`, no trailing slash
    uri: str

    def path(self, *parts: str) -> str:
        """Join parts under the root; every segment is checked so nothing escapes the store."""
        segments = [seg for part in parts for seg in part.split("/")]
        for seg in segments:
            if not _SEGMENT.match(seg) or seg in (".", ".."):
                raise UnsafeArtifactError(f"path segment {seg!r} is not allowed in a store path")
        return "/".join([self.root, *segments]) if self.root else "/".join(segments)


def open_store(uri: str, options: dict | None = None) -> Store:
    """Open `uri` (a local path, file://, s3://, hdfs:// or webhdfs://) with fsspec.

    S3 options (endpoint_url, key, secret, region) come from `options` or, when absent, from the standard AWS
    environment variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION), which
    botocore reads itself.
    """
    options = {k: v for k, v in (options or {}).items() if v is not None}
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file"):
        root = Path(uri.removeprefix("file://")).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return Store(fsspec.filesystem("file", auto_mkdir=True), root.as_posix(), uri)
    if scheme in ("s3", "s3a"):
        return Store(_s3(options), f"{parsed.netloc}{parsed.path}".rstrip("/"), uri)
    if scheme in ("hdfs", "webhdfs"):
        return Store(_hdfs(scheme, parsed, options), parsed.path.rstrip("/"), uri)
    raise StoreError(f"unsupported store URI {uri!r}; use a local path, file://, s3://, hdfs:// or webhdfs://")


def _s3(options: dict) -> AbstractFileSystem:
    try:
        import s3fs
    except ImportError:
        raise StoreError("s3:// stores need s3fs (fix: pip install s3fs)") from None
    kwargs: dict = {}
    if "endpoint_url" in options:
        kwargs["endpoint_url"] = options["endpoint_url"]
    if "key" in options:
        kwargs["key"], kwargs["secret"] = options["key"], options.get("secret")
    if "region" in options:
        kwargs["client_kwargs"] = {"region_name": options["region"]}
    # Fresh instance: fsspec caches filesystems by arguments, and tests run several servers in one process.
    return s3fs.S3FileSystem(skip_instance_cache=True, **kwargs)


def _hdfs(scheme: str, parsed, options: dict) -> AbstractFileSystem:
    host, port = parsed.hostname or "default", parsed.port
    if scheme == "webhdfs":
        return fsspec.filesystem("webhdfs", host=host, port=port or 9870, user=options.get("user"))
    try:
        return fsspec.filesystem("hdfs", host=host, port=port or 8020, user=options.get("user"))
    except (ImportError, OSError) as err:
        raise StoreError(
            "hdfs:// needs pyarrow and the Hadoop client (libhdfs with HADOOP_HOME and CLASSPATH set): "
            "pip install pyarrow and install Hadoop, or use webhdfs:// which needs neither "
            f"({err})"
        ) from None
