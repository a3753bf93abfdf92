"""One error hierarchy for every transport.

Each error a client can cause names one HTTP status, and takes its gRPC status from the one table below; HTTP
and gRPC adapters both read them from here, so the two transports can never disagree. Messages are written for
clients: they name the problem and never include tracebacks or exception class names.
"""

from __future__ import annotations

import math

# The one status table: an error's HTTP status -> its gRPC status. Each error class names its HTTP status and
# takes its gRPC status from here, so HTTP and gRPC answers cannot disagree; `retryable` errors (overloaded, not
# ready) also say when to retry: `Retry-After` over HTTP, a `retry-after` trailer over gRPC (`retry_after`).
HTTP_TO_GRPC = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "FAILED_PRECONDITION",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class GatewayError(Exception):
    """Base class. `kind` is a stable machine-readable name, also used as a metrics label."""

    http_status = 500
    grpc_status = "INTERNAL"
    kind = "internal"
    retryable = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.grpc_status = HTTP_TO_GRPC[cls.http_status]

    def __init__(self, message: str, **details: object):
        super().__init__(message)
        self.message = message
        self.details = details

    def to_body(self) -> dict:
        return {"error": self.message, "kind": self.kind, **self.details}


class InvalidInput(GatewayError):
    """The request is malformed or breaks a limit. HTTP 400 / INVALID_ARGUMENT."""

    http_status = 400
    kind = "invalid_input"


class PayloadTooLarge(InvalidInput):
    """The body is over the configured size. HTTP 413 / INVALID_ARGUMENT."""

    http_status = 413
    kind = "payload_too_large"


class Unauthenticated(GatewayError):
    """No or malformed credentials. HTTP 401 / UNAUTHENTICATED."""

    http_status = 401
    kind = "unauthenticated"


class PermissionDenied(GatewayError):
    """Credentials given but not accepted. HTTP 403 / PERMISSION_DENIED."""

    http_status = 403
    kind = "permission_denied"


class ModelNotFound(GatewayError):
    """No model (or version) of that name. HTTP 404 / NOT_FOUND."""

    http_status = 404
    kind = "model_not_found"


class ModelNotReady(GatewayError):
    """The model exists but cannot answer now (loading, restarting). HTTP 503 / UNAVAILABLE."""

    http_status = 503
    kind = "model_not_ready"
    retryable = True


class Overloaded(GatewayError):
    """Queues are full; retry later. HTTP 429 with Retry-After / RESOURCE_EXHAUSTED."""

    http_status = 429
    kind = "overloaded"
    retryable = True


class DeadlineExceeded(GatewayError):
    """The request ran past its deadline. HTTP 504 / DEADLINE_EXCEEDED."""

    http_status = 504
    kind = "deadline_exceeded"


class InferenceFailed(GatewayError):
    """A fault on our side; the message stays generic. HTTP 500 / INTERNAL."""

    http_status = 500
    kind = "internal"


class LoadFailed(GatewayError):
    """A model version could not be started (its replica failed to load). HTTP 500 / INTERNAL."""

    http_status = 500
    kind = "load_failed"


def retry_after(err: GatewayError) -> int | None:
    """Whole seconds after which a retry may succeed (HTTP `Retry-After`, gRPC `retry-after` trailer), for the
    errors that pass (overloaded, not ready); None for the others."""
    if not err.retryable:
        return None
    return max(1, math.ceil(err.details.get("retry_after_s", 1)))
