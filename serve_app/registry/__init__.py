"""Model registry: versions by iteration, timestamp and content hash in a local, S3 or HDFS store.

Plain Python over fsspec; no Ray. Layout inside a store (one folder per model):

    <model>/claims/<n>                    iteration n is taken (exclusive create; never deleted, never reused)
    <model>/versions/<n>/files/...        the artifact files
    <model>/versions/<n>/version.json     written last: a version exists once this file does
    <model>/aliases.json                  stable, canary and user aliases -> iteration ("latest" is derived)
"""

from serve_app.registry.errors import (
                                       IntegrityError,
                                       RegistryError,
                                       SelectorError,
                                       StoreError,
                                       UnsafeArtifactError,
                                       VersionNotFound,
)
from serve_app.registry.registry import Registry
from serve_app.registry.store import open_store
from serve_app.registry.versions import ModelVersion, parse_selector

__all__ = ["IntegrityError", "ModelVersion", "Registry", "RegistryError", "SelectorError", "StoreError",
           "UnsafeArtifactError", "VersionNotFound", "open_store", "parse_selector"]
