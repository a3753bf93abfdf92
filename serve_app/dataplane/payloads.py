"""The typed request and answer every protocol adapter converts to and from (simple JSON, OIP REST and gRPC,
TF Serving): adapters parse bytes and headers, the dataplane sees only these."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class InferenceRequest:
    """Texts for a model or a pipeline. `target` is a model name, a pipeline name (with `pipeline`), or "" for
    the default model of `task`; with `task` set (a task's own route) the target must be a model of that task."""

    target: str
    texts: list[str]
    version: str | None = None  # a pinned version label; None: the traffic split
    params: dict = field(default_factory=dict)  # model parameters, checked by the task's contract
    task: str | None = None
    pipeline: bool = False
    trace: bool = False  # pipelines: add each node's latency and version
    # What the request needs of the answering variant, as sent (latency_budget_ms, min_accuracy): checked and
    # used by serve_app/dataplane/selection.py.
    needs: dict = field(default_factory=dict)
    fresh: bool = False  # Cache-Control: no-cache: answer without the response cache
    # Pipelines: the request's headers (gRPC metadata), names in lower case, which switch nodes may test.
    headers: dict = field(default_factory=dict)


@dataclass
class InferenceResponse:
    """One record per text. `version` is the version that answered ("" for a pipeline); `fields` holds what
    else the model said about its answer (max_length, max_new_tokens...)."""

    target: str
    results: list[dict]
    version: str = ""
    pipeline: bool = False
    fields: dict = field(default_factory=dict)
    trace: list[dict] | None = None

    def headers(self) -> dict[str, str]:
        if self.pipeline:
            return {"X-Pipeline": self.target}
        headers = {"X-Model-Name": self.target, "X-Model-Version": self.version}
        if "cache" in self.fields:
            headers["X-Cache"] = self.fields["cache"]
        choice = self.fields.get("selection")
        if choice:
            headers["X-Variant-Selection"] = (f"variant={choice['variant']}; reason={choice['reason']}; "
                                              f"budget_met={str(choice['budget_met']).lower()}")
        return headers

    def oip_parameters(self) -> dict[str, str | bool]:
        """What the headers say about caching and variant selection, as OIP response parameters (REST and gRPC
        clients see no HTTP headers of ours through tritonclient's result objects)."""
        out: dict[str, str | bool] = {}
        if "cache" in self.fields:
            out["cache"] = self.fields["cache"]
        choice = self.fields.get("selection")
        if choice:
            out |= {"selection_variant": choice["variant"], "selection_reason": choice["reason"],
                    "budget_met": bool(choice["budget_met"])}
        return out
