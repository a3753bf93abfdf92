"""Bearer tokens for both transports: one check, constant-time, never echoing or logging what was sent.

Two independent tokens (settings: GATEWAY_INFERENCE_TOKEN, GATEWAY_ADMIN_TOKEN): one for inference and metadata,
one for administration (load/unload, traffic). An unset inference token leaves inference open. An unset admin
token leaves administration open only while the server listens on loopback (`make run` on a laptop); on any
other address administration is closed until a token is set (`admin_token_for`). Health probes are always
open, so orchestrators need no secret.
"""

from __future__ import annotations

import hmac
import ipaddress

from serve_app.errors import PermissionDenied, Unauthenticated

# HTTP paths that never need a token (liveness/readiness probes).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"})
# HTTP path prefixes guarded by the admin token instead of the inference token.
ADMIN_PREFIXES = ("/v1/admin/", "/v2/repository/models/")


class Closed(str):
    """A realm that no token opens: every call is refused, saying why (a `str` so it travels like a token)."""


def admin_token_for(token: str | None, host: str) -> str | None:
    """The admin token to enforce: the configured one; with none, open on a loopback address, else `Closed`."""
    if token:
        return token
    if is_loopback(host):
        return None
    return Closed(f"the admin API is closed: the gateway listens on {host}, not loopback, and no admin token is "
                  "set; set GATEWAY_ADMIN_TOKEN (the Kubernetes manifests read it from the Secret gateway-admin)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bearer(token: str | None, authorization: str, realm: str = "admin") -> None:
    """`Authorization: Bearer <token>` compared in constant time; no token configured: open; `Closed`: shut.

    401 / UNAUTHENTICATED when no bearer credentials are sent, 403 / PERMISSION_DENIED when they do not match.
    """
    if isinstance(token, Closed):
        raise PermissionDenied(str(token))
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
