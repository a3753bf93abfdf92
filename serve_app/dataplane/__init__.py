"""The transport-agnostic core, one object per concern over one shared `ModelTable`:

- `inference`: check texts, pick a version, admit and call it, run pipelines, open token streams;
- `status`: metadata and readiness of models and pipelines;
- `admin`: load and unload versions, set traffic;
- `deadlines`: what a request may ask for, and running work under it.

Protocol adapters (serve_app/protocols) decode bytes and headers into an `InferenceRequest`, call these, and
encode the `InferenceResponse` or the `GatewayError` raised.
"""

from __future__ import annotations

from collections.abc import Iterable

from serve_app.config import GatewayConfig
from serve_app.dataplane.admin import Admin
from serve_app.dataplane.backends import ModelBackend, ModelManager
from serve_app.dataplane.deadlines import Deadlines
from serve_app.dataplane.inference import Inference
from serve_app.dataplane.payloads import InferenceRequest, InferenceResponse
from serve_app.dataplane.routing import ModelRoutes
from serve_app.dataplane.shared_state import SharedRoutes
from serve_app.dataplane.status import Status
from serve_app.dataplane.table import ModelTable
from serve_app.metrics import Metrics

__all__ = ["DataPlane", "InferenceRequest", "InferenceResponse", "ModelBackend", "ModelManager"]


class DataPlane:
    def __init__(self, config: GatewayConfig, routes: dict[str, ModelRoutes], manager: ModelManager | None = None,
                 metrics: Metrics | None = None, shared: SharedRoutes | None = None, protected: Iterable[str] = ()):
        self.table = ModelTable(config, routes, metrics)
        self.config = config
        self.limits = config.server.limits
        self.inference = Inference(self.table)
        self.status = Status(self.table)
        self.admin = Admin(self.table, self.status, manager, shared, protected)
        self.deadlines = Deadlines(self.limits, self.table.metrics)
