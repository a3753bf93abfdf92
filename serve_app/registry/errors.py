"""Registry errors. Each is also a gateway error, so HTTP/gRPC adapters map them with the shared table."""

from serve_app.errors import GatewayError, InvalidInput, ModelNotFound


class RegistryError(GatewayError):
    """Base class of registry failures (HTTP 500 unless a subclass says otherwise)."""

    kind = "registry_error"


class StoreError(RegistryError):
    """The store cannot be opened or reached (missing client library, bad URI, credentials)."""

    http_status = 503
    kind = "store_unavailable"


class SelectorError(InvalidInput):
    """A version selector or name is malformed or ambiguous."""

    kind = "invalid_selector"


class VersionNotFound(ModelNotFound):
    """No version matches the selector."""

    kind = "version_not_found"


class UnsafeArtifactError(InvalidInput):
    """A file that may not be registered or loaded (pickles, paths escaping the store, odd names)."""

    kind = "unsafe_artifact"


class IntegrityError(RegistryError):
    """Files do not match the content hash recorded for their version; the load is refused."""

    http_status = 409
    kind = "integrity_error"
