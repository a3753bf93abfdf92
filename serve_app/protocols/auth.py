"""Bearer tokens for both transports: one check, constant-time, never echoing or logging what was sent.

Two independent tokens (settings: GATEWAY_INFERENCE_TOKEN, GATEWAY_ADMIN_TOKEN): one for inference and metadata,
one for administration (load/unload, traffic). An unset token leaves its endpoints open. Health probes are
always open, so orchestrators need no secret.
"""

from __future__ import annotations

import hmac

from serve_app.errors import PermissionDenied, Unauthenticated

# HTTP paths that never need a token (liveness/readiness probes).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
# HTTP path prefixes guarded by the admin token instead of the inference token.
ADMIN_PREFIXES = ("/v1/admin/", "/v2/repository/models/")


def check_bearer(token: str | None, authorization: str, realm: str = "admin") -> None:
    """`Authorization: Bearer <token>` compared in constant time; no token configured: open.

    401 / UNAUTHENTICATED when no bearer credentials are sent, 403 / PERMISSION_DENIED when they do not match.
    """
    if not token:
        return
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthenticated(f"{realm} calls need an 'Authorization: Bearer <token>' header")
    # compare_digest on bytes: constant time in the length of the given token, whatever its content.
    if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token.encode()):
        raise PermissionDenied(f"the {realm} token is not valid")


def realm_of(path: str) -> str | None:
    """Which token an HTTP path needs: "admin", "inference", or None (open)."""
    if path in OPEN_PATHS:
        return None
    if path.startswith(ADMIN_PREFIXES):
        return "admin"
    return "inference"
