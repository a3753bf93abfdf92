"""Pipeline graphs as YAML-friendly pydantic models, one class per node type (discriminated by `type`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serve_app.pipelines.fusion import METHODS

NODE_NAME = r"^[a-z][a-z0-9_-]{0,62}$"


class ResponseCaching(BaseModel):
    """A response cache (serve_app/dataplane/cache.py) for a model, or for every model call of a pipeline's
    nodes: answers kept per version, keyed by inputs + parameters. Here, not in serve_app.config, because the
    config imports the pipeline spec (not the reverse) and both declare it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_bytes: Annotated[int, Field(ge=1024, le=1 << 40)] = 64 << 20
    ttl_s: Annotated[float, Field(gt=0, le=7 * 86400)] = 300.0


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Per-node deadline; past it the request fails with 504 naming the node.
    timeout_s: Annotated[float, Field(gt=0, le=3600)] | None = None


class ModelNode(_Node):
    """Call one served model; `model` may pin a loaded version (`classifier@3`)."""

    type: Literal["model"] = "model"
    model: Annotated[str, Field(min_length=1, max_length=120)]
    params: dict[str, int | float | str | bool] = {}


class ChainStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    node: Node
    # Which field of the previous step's output becomes this step's input text ("text": the request's texts).
    input: Annotated[str, Field(min_length=1)] = "text"


class ChainNode(_Node):
    """Model-serial: each step's output feeds the next; the answer merges every step's fields."""

    type: Literal["chain"] = "chain"
    steps: Annotated[list[ChainStep], Field(min_length=2)]


class SplitNode(_Node):
    """Data splitting.

    serial: each text is cut into overlapping windows (characters, cut at whitespace); the windows go through
    `node` and the results are joined in order (summaries concatenated, probabilities averaged); `reduce`, if
    given, then runs on the joined text (map-reduce summarization).
    parallel: the batch of texts is cut into chunks of `chunk_size`, run concurrently, reassembled in order.
    """

    type: Literal["split"] = "split"
    mode: Literal["serial", "parallel"]
    node: Node
    window_chars: Annotated[int, Field(ge=100, le=1_000_000)] = 2000
    overlap_chars: Annotated[int, Field(ge=0, le=100_000)] = 200
    chunk_size: Annotated[int, Field(ge=1, le=1024)] = 4
    reduce: Node | None = None


class FanoutNode(_Node):
    """Model-parallel: the same input to every branch concurrently; results kept per branch."""

    type: Literal["fanout"] = "fanout"
    branches: Annotated[dict[Annotated[str, Field(pattern=NODE_NAME)], Node], Field(min_length=2)]
    policy: Literal["fail_fast", "best_effort"] = "fail_fast"
    min_success: Annotated[int, Field(ge=1)] | None = None  # best_effort only; default 1


class FuseNode(_Node):
    """Combine a fan-out's classifier branches into one answer (see fusion.py for each method)."""

    type: Literal["fuse"] = "fuse"
    source: FanoutNode
    method: Literal[METHODS]  # type: ignore[valid-type]
    weights: dict[str, Annotated[float, Field(ge=0)]] | None = None
    # Per branch, {its label: shared label}, for branches whose label sets differ.
    label_map: dict[str, dict[str, str]] = {}


class Condition(BaseModel):
    """What a switch case tests, per text: a field of the record so far (inside a chain: what earlier steps
    answered, e.g. `label`), a request parameter, or a request header; against `equals`, `one_of`, `above` or
    `below` (numbers). Exactly one source and one test."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    param: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    header: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    equals: str | int | float | bool | None = None
    one_of: Annotated[list[str | int | float | bool], Field(min_length=1, max_length=1000)] | None = None
    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one_source_one_test(self) -> Condition:
        sources = [k for k in ("field", "param", "header") if getattr(self, k) is not None]
        tests = [k for k in ("equals", "one_of", "above", "below") if getattr(self, k) is not None]
        if len(sources) != 1:
            raise ValueError(f"give exactly one of field, param, header (got {sources or 'none'})")
        if len(tests) != 1:
            raise ValueError(f"give exactly one of equals, one_of, above, below (got {tests or 'none'})")
        return self

    @property
    def source(self) -> tuple[str, str]:
        """("field" | "param" | "header", its name)."""
        kind = next(k for k in ("field", "param", "header") if getattr(self, k) is not None)
        return kind, getattr(self, kind)


class SwitchCase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    when: Condition
    node: Node


class SwitchNode(_Node):
    """Conditional routing (KServe InferenceGraph's Switch), per text: the first case (in order) whose condition
    holds runs its node on that text; with none, `default` does, or the text passes with no answer of this node.
    Each record gets `branch`: the case's name, "default", or null."""

    type: Literal["switch"] = "switch"
    cases: Annotated[dict[Annotated[str, Field(pattern=NODE_NAME)], SwitchCase], Field(min_length=1)]
    default: Node | None = None


class PipelineRef(_Node):
    """Run another pipeline of this config as a node."""

    type: Literal["pipeline"] = "pipeline"
    pipeline: Annotated[str, Field(pattern=NODE_NAME)]


Node = Annotated[ModelNode | ChainNode | SplitNode | FanoutNode | FuseNode | SwitchNode | PipelineRef,
                 Field(discriminator="type")]
ChainStep.model_rebuild()
ChainNode.model_rebuild()
SplitNode.model_rebuild()
FanoutNode.model_rebuild()
FuseNode.model_rebuild()
SwitchCase.model_rebuild()
SwitchNode.model_rebuild()


class Pipeline(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=NODE_NAME)]
    description: str = ""
    graph: Node
    cache: ResponseCaching | None = None  # caches each node's model call (per version of that model)
