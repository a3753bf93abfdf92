"""One error table: every typed error's gRPC status is the one its HTTP status maps to."""

import grpc
import pytest

from serve_app import errors
from serve_app.pipelines.engine import BranchesFailed
from serve_app.registry import errors as registry_errors


def all_error_classes():
    seen, todo = set(), [errors.GatewayError]
    while todo:
        cls = todo.pop()
        seen.add(cls)
        todo += [c for c in cls.__subclasses__() if c not in seen]
    return seen


def test_every_error_takes_its_grpc_status_from_the_table():
    classes = all_error_classes()
    assert {registry_errors.IntegrityError, BranchesFailed, errors.Overloaded} <= classes
    for cls in classes:
        assert errors.HTTP_TO_GRPC[cls.http_status] == cls.grpc_status, cls.__name__
        assert hasattr(grpc.StatusCode, cls.grpc_status), cls.__name__
    assert registry_errors.IntegrityError.grpc_status == "FAILED_PRECONDITION"
    assert BranchesFailed.grpc_status == "UNAVAILABLE"


def test_an_error_with_a_status_outside_the_table_cannot_be_declared():
    with pytest.raises(KeyError):
        type("Teapot", (errors.GatewayError,), {"http_status": 418})


def test_only_retryable_errors_say_when_to_retry():
    assert errors.retry_after(errors.Overloaded("busy", retry_after_s=2.2)) == 3
    assert errors.retry_after(errors.ModelNotReady("loading")) == 1
    assert errors.retry_after(registry_errors.StoreError("store down")) is None
    assert errors.retry_after(errors.InvalidInput("bad")) is None


def test_the_table_names_real_grpc_codes_and_keeps_client_errors_4xx():
    assert all(hasattr(grpc.StatusCode, name) for name in errors.HTTP_TO_GRPC.values())
    for cls in (errors.InvalidInput, errors.ModelNotFound, errors.Unauthenticated, errors.PermissionDenied,
                errors.PayloadTooLarge, registry_errors.SelectorError, registry_errors.UnsafeArtifactError):
        assert 400 <= cls.http_status < 500
    assert errors.ModelNotReady.http_status == 503 and errors.ModelNotReady.grpc_status == "UNAVAILABLE"
    assert (errors.Overloaded.http_status, errors.Overloaded.grpc_status) == (429, "RESOURCE_EXHAUSTED")
