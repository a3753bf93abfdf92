"""`ModelBackend` over Ray Serve DeploymentHandles: how the ingress calls a model version, and how Ray's faults
become typed, retryable gateway errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle, DeploymentResponse

from serve_app.config import ModelConfig
from serve_app.dataplane.batching import SlotBatcher
from serve_app.dataplane.priority import CURRENT, NORMAL
from serve_app.errors import DeadlineExceeded, GatewayError, ModelNotReady, Overloaded
from serve_app.plan import mux_app

log = logging.getLogger("ray.serve")


# A replica that died or cannot be reached: the call may succeed on another (or the replacement) replica.
_REPLICA_LOST = (RayActorError, ActorUnavailableError, ReplicaUnavailableError, DeploymentUnavailableError)
# Unary calls lost with their replica are sent again this many times, after these pauses: Ray's router learns
# of a dead node's replicas within seconds, and may pick another of them meanwhile.
LOST_RETRIES = 3
LOST_BACKOFF_S = (0.1, 0.5, 2.0)


def worth_isolating(err: Exception) -> bool:
    """Whether a merged call that failed is rerun request by request: yes when one request's input may be the
    cause (the replica refused or failed on it), not when every request would fail alike (overloaded, no
    replica, past the deadline): rerunning those would only multiply the load."""
    return not (isinstance(err, GatewayError) and (err.retryable or isinstance(err, DeadlineExceeded)))


def _class_arg() -> tuple:
    """The request's priority class for the model replica's own queue (the merged call's: its batch's class);
    the default class is not sent."""
    cls = CURRENT.get()
    return () if cls == NORMAL else (cls,)


class HandleBackend:
    """`ModelBackend` over a Ray Serve DeploymentHandle; Ray's faults become typed, retryable gateway errors.

    With `model.coalesces`, concurrent requests without parameters are merged into one handle call (a
    `SlotBatcher` keeping `model.calls_in_flight` calls in flight): a hop through Ray costs about as much CPU as
    a small model's forward pass, so one hop per batch instead of per request is most of the fast path.
    """

    def __init__(self, handle: DeploymentHandle, name: str = "", model: ModelConfig | None = None, app: str = ""):
        self.handle = handle
        self.name = name or handle.deployment_name
        self.app = app  # the Serve application (the shared routing state names versions by it)
        self.coalescer = None
        self.facts: dict = {}  # content hash and gated accuracy of the version (serve_app.plan.version_facts)
        if model is not None and model.coalesces:
            self.coalescer = SlotBatcher(self._merged, model.batching.max_batch_size, model.calls_in_flight,
                                         max_queued=model.resources.max_queued_requests, name=self.name,
                                         isolate=worth_isolating)

    async def infer(self, texts: list[str], params: dict) -> dict:
        # A sampled (traced) request takes a call of its own: a merged call belongs to no one request's trace.
        if self.coalescer is None or params or trace.get_current_span().is_recording():
            return await self._call(lambda: self.handle.infer.remote(texts, params, *_class_arg()))
        answers = await self.coalescer.submit(texts)
        return {**answers[0][0], "results": [result for _, result in answers]}

    async def _merged(self, texts: list[str]) -> list[tuple[dict, dict]]:
        """One model call for many requests' texts: (the answer's version fields, one result) per text. Sent
        outside any trace: the batcher's task carries the context of whichever request started it."""
        token = otel_context.attach(otel_context.Context())
        try:
            out = await self._call(lambda: self.handle.infer.remote(texts, {}, *_class_arg()))
        finally:
            otel_context.detach(token)
        fields = {k: v for k, v in out.items() if k != "results"}
        return [(fields, result) for result in out["results"]]

    async def info(self) -> dict:
        return await self._call(lambda: self.handle.info.remote())

    async def stream(self, request: dict):
        """The replica's `generate` events through a streaming handle (a DeploymentResponseGenerator)."""
        response = self.handle.options(stream=True).generate.remote(request)
        finished = False
        try:
            with self._ray_faults("a stream"):
                async for event in response:
                    yield event
            finished = True
        finally:
            if not finished:  # the client left or a deadline passed: stop the replica's generator (and sequence)
                response.cancel()

    @contextmanager
    def _ray_faults(self, what: str, lost_passes: bool = False):
        """Ray's faults as typed, retryable gateway errors (a lost replica passes as is with `lost_passes`: the
        caller sends the call again)."""
        try:
            yield
        except BackPressureError as err:
            # The ingress already holds max_queued_requests calls waiting for this model: refuse at once.
            raise Overloaded(f"model '{self.name}' is at capacity; retry shortly",
                             retry_after_s=getattr(err, "retry_after_s", None) or 1) from None
        except _REPLICA_LOST:
            if lost_passes:
                raise
            log.warning("a replica of %s was lost during %s", self.name, what)
            raise ModelNotReady(f"model '{self.name}' lost a replica while answering; retry shortly",
                                retry_after_s=1) from None

    async def _call(self, send: Callable[[], DeploymentResponse]):
        """Send a unary call (inference and metadata are idempotent: the same texts get the same answer), and send
        it again when the replica that had it was lost (its node died, or Ray replaced it): the router then picks
        a live replica, and the caller sees an answer instead of an error. After `LOST_RETRIES`, 503 retryable."""
        for attempt in range(LOST_RETRIES + 1):
            try:
                return await self._await(send())
            except _REPLICA_LOST:
                if attempt == LOST_RETRIES:
                    log.warning("a replica of %s was lost during a call, %d times", self.name, attempt + 1)
                    raise ModelNotReady(f"model '{self.name}' lost a replica while answering; retry shortly",
                                        retry_after_s=1) from None
                await asyncio.sleep(LOST_BACKOFF_S[attempt])

    async def _await(self, response: DeploymentResponse):
        try:
            with self._ray_faults("a call", lost_passes=True):
                return await response
        except asyncio.CancelledError:
            # A deadline passed or the client left. Ray Serve does not cancel a handle call whose awaiter is
            # cancelled; without this the model would go on computing an answer nobody reads.
            response.cancel()
            raise


def backend_for(model: ModelConfig, app: str, label: str = "") -> HandleBackend:
    # No existence check: it is a blocking controller call, made on the replica's event loop; and an ingress
    # replica Ray starts again builds its deploy-time table before the shared state drops versions unloaded
    # since (their applications deleted), which the check would turn into a failed constructor, forever.
    handle = serve.get_deployment_handle(model.name, app_name=app, _check_exists=False)
    if app == mux_app(model.name):  # Ray routes the call to a replica holding (or loading) that version
        handle = handle.options(multiplexed_model_id=label)
    return HandleBackend(handle, model.name, model, app)
