"""A served model's configuration: task, source or registry versions, batching, resources, generation."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from serve_app.pipelines.spec import ResponseCaching
from serve_app.tasks import TASKS, contract, streaming_tasks

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"


# One member per task contract in serve_app/tasks (classification, summarization, identity, ...).
Task = StrEnum("Task", {name: name for name in TASKS})


def _known_task(name: str) -> str:
    # Checked against TASKS when a config is read, not frozen into an enum at import: a contract registered
    # later (a test's) is served like one found by module.
    if name not in TASKS:
        raise ValueError(f"unknown task '{name}'")
    return name


TaskName = Annotated[str, AfterValidator(_known_task)]


class Runtime(StrEnum):
    auto = "auto"  # what the model folder asks for: onnx for an ONNX variant, llama.cpp for a GGUF, else torch
    torch = "torch"
    onnx = "onnx"  # classifiers only: onnxruntime (CPU, or CUDA with onnxruntime-gpu)
    llama_cpp = "llama.cpp"  # generation only: a GGUF file on llama.cpp (auto picks it for a folder with one)
    vllm = "vllm"  # generation only: a Hugging Face folder on vLLM (auto picks it where vLLM is installed)


class Strict(BaseModel):
    # Unknown keys are almost always typos ("num_cpu"); refuse them instead of ignoring them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Batching(Strict):
    """Dynamic batching (`@serve.batch`) of concurrent requests inside one replica."""

    max_batch_size: Annotated[int, Field(ge=1, le=256)] = 16
    # How long a batch with a free run slot waits for more requests. Under load batches fill without it (a
    # batch forms when a slot frees, from everything queued meanwhile); 0 means a lone request runs at once.
    batch_wait_timeout_s: Annotated[float, Field(ge=0, le=5)] = 0.01
    # Batches one replica runs at once, each in its own thread. With 2, a replica keeps both cores busy with
    # one intra-op thread per batch under load, and gives a lone batch all its `threads` (classifiers).
    max_concurrent_batches: Annotated[int, Field(ge=1, le=16)] = 1
    # The ingress merges concurrent requests for one version into one model call (one hop per batch, not per
    # request). None: on for classifiers; identity models keep one call per request (their tests count calls).
    coalesce: bool | None = None


class Autoscaling(Strict):
    """Ray Serve replica autoscaling (its `autoscaling_config`): replicas follow the requests in flight.

    Replicas are added when the average ongoing requests per replica stay above `target_ongoing_requests` for
    `upscale_delay_s`, and removed when they stay below it for `downscale_delay_s`. On KubeRay the in-tree
    autoscaler then adds or removes worker pods for replicas that do not fit.
    """

    min_replicas: Annotated[int, Field(ge=1, le=64)] = 1
    max_replicas: Annotated[int, Field(ge=1, le=64)] = 2
    initial_replicas: Annotated[int, Field(ge=1, le=64)] | None = None
    target_ongoing_requests: Annotated[float, Field(gt=0, le=10_000)] = 2.0
    upscale_delay_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    downscale_delay_s: Annotated[float, Field(ge=0, le=3600)] = 600.0
    # The window the request counts are averaged over.
    look_back_period_s: Annotated[float, Field(gt=0, le=3600)] = 30.0

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Autoscaling:
        initial = self.initial_replicas if self.initial_replicas is not None else self.min_replicas
        if not self.min_replicas <= initial <= self.max_replicas:
            raise ValueError(f"need min_replicas <= initial_replicas <= max_replicas, got {self.min_replicas}, "
                             f"{initial}, {self.max_replicas}")
        return self


class Resources(Strict):
    """What one replica asks Ray for. `num_gpus: auto` takes one GPU per replica when the cluster has GPUs."""

    replicas: Annotated[int, Field(ge=1, le=64)] = 1
    # Whole CPUs on a 2-core machine leave replicas unscheduled and requests hanging: default to a fraction.
    num_cpus: Annotated[float, Field(gt=0, le=64)] = 0.5
    num_gpus: Annotated[float, Field(ge=0, le=8)] | Literal["auto"] = "auto"
    # Intra-op threads of torch in each replica; None keeps Ray's choice (its CPU share, at least 1).
    threads: Annotated[int, Field(ge=1, le=256)] | None = None
    # Ray Serve's default (5) silently caps @serve.batch; derived from batching when unset.
    max_ongoing_requests: Annotated[int, Field(ge=1, le=10_000)] | None = None
    # Requests waiting at the ingress for a busy replica beyond this answer 429 with Retry-After at once,
    # instead of queueing without bound. None: no limit (Ray Serve's default).
    max_queued_requests: Annotated[int, Field(ge=1, le=100_000)] | None = None
    # A queue bounded by time: a request whose expected wait for a slot (queue ahead x measured service time /
    # concurrency) exceeds this is refused at once with 429 and Retry-After (serve_app/dataplane/admission.py). Requests
    # are always refused when the expected wait exceeds their own deadline. None: the deadline only.
    max_queue_wait_s: Annotated[float, Field(gt=0, le=3600)] | None = None
    # Replicas that follow the load; replaces a fixed `replicas` (which must then stay 1, its default).
    autoscaling: Autoscaling | None = None
    # Ray custom resources each replica asks for: places replicas on the nodes that offer them, e.g.
    # {"worker": 0.1} on nodes started with `--resources '{"worker": 4}'` (a KubeRay worker group's rayStartParams).
    custom: dict[Annotated[str, Field(min_length=1, max_length=64)], Annotated[float, Field(gt=0, le=10_000)]] = {}
    # Ray Serve's max_replicas_per_node: 1 puts each replica on a different node, so losing a node loses one.
    max_replicas_per_node: Annotated[int, Field(ge=1, le=100)] | None = None

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> Resources:
        if self.autoscaling is not None and self.replicas != 1:
            raise ValueError("give either 'replicas' or 'autoscaling' (min_replicas/max_replicas), not both")
        reserved = sorted(set(self.custom) & {"CPU", "GPU", "memory", "object_store_memory"})
        if reserved:
            raise ValueError(f"custom resources {reserved} are Ray's own: use num_cpus / num_gpus")
        return self


class Generation(Strict):
    """Decoding settings for generation tasks (their contracts stream). Greedy by default so answers are
    reproducible."""

    max_new_tokens: Annotated[int, Field(ge=1, le=1024)] = 64
    max_new_tokens_limit: Annotated[int, Field(ge=1, le=2048)] = 256
    do_sample: bool = False
    # Continuous batching (decoder-only models): sequences decoded together, and prompt tokens prefilled per
    # engine iteration while others decode (smaller: running streams stall less while a long prompt is read;
    # larger: faster prefill). None: the engine's own default (torch 64, llama.cpp 256).
    max_running: Annotated[int, Field(ge=1, le=256)] = 8
    prefill_chunk: Annotated[int, Field(ge=8, le=4096)] | None = None
    # llama.cpp: a new prompt starts from a free slot's cache when they share a prefix (the chat template and
    # system prompt), as llama-server's `cache_prompt` does by default; the engine keeps a lone request's answer
    # the same either way (serve_app/runtime/engines/llamacpp_engine.py). false: every prompt is prefilled whole.
    prompt_cache: bool = True
    # vLLM: torch.compile the model (and CUDA graphs on a GPU), as vLLM does by default. Measured here (SmolLM2,
    # bf16, 2 cores): 279 tokens/s at 8 streams against 194 eager, for ~40 s more at start. false: eager.
    compile: bool = True

    @model_validator(mode="after")
    def _default_within_limit(self) -> Generation:
        if self.max_new_tokens > self.max_new_tokens_limit:
            raise ValueError(
                f"max_new_tokens ({self.max_new_tokens}) is above max_new_tokens_limit "
                f"({self.max_new_tokens_limit}); lower it or raise the limit"
            )
        return self


class Selection(Strict):
    """SLO-aware variant selection (serve_app/dataplane/selection.py): registry versions of the same lineage
    served beside the configured one; a request with a latency budget or accuracy floor gets the most accurate
    gated variant expected to meet it."""

    # Registry selectors (iterations, aliases, hash prefixes) loaded as candidates, without traffic of their own.
    variants: Annotated[list[Annotated[str, Field(min_length=1, max_length=80)]], Field(min_length=1, max_length=8)]
    # A request whose budget no variant is expected to meet: answered by the fastest (flagged), or refused (429).
    on_unmet: Literal["fastest", "refuse"] = "fastest"


class Multiplex(Strict):
    """Several registry versions in each replica of one Serve application, through Ray Serve's model multiplexing
    (`@serve.multiplexed`): a version loads on a replica at its first call there, the least recently used one is
    evicted past the cap, and Ray routes a version's calls to replicas that hold it."""

    max_versions_per_replica: Annotated[int, Field(ge=1, le=64)] = 4
    # How long a call waits for its version to load on the replica before a 503 with Retry-After (the load goes
    # on; a retry finds it loaded). 0: never wait.
    load_wait_s: Annotated[float, Field(ge=0, le=600)] = 10.0


class ModelConfig(Strict):
    """A served model: either a folder (`source`) or versions of the registry model of the same name."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    task: TaskName
    # A checkpoint folder (path or file://) served as is, named by its content hash. None: use the registry.
    source: Annotated[str, Field(min_length=1)] | None = None
    runtime: Runtime = Runtime.auto
    # Registry selector after the '@': an iteration (7), alias (stable), hash prefix (sha256:3fa1) or UTC time.
    version: Annotated[str, Field(min_length=1, max_length=80)] = "latest"
    # Traffic split between registry versions: selector -> weight (normalised). Replaces `version`.
    traffic: dict[str, Annotated[float, Field(gt=0)]] | None = None
    # The registry model to serve, when it differs from `name` (e.g. a variant with another max_length).
    registry_model: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    # identity models only: how long each call sleeps.
    delay_ms: Annotated[float, Field(ge=0, le=60_000)] = 0.0
    # Inputs longer than this many tokens are truncated (and the response says so). None: the model's own limit.
    max_length: Annotated[int, Field(ge=8, le=32_768)] | None = None
    batching: Batching = Batching()
    resources: Resources = Resources()
    generation: Generation | None = None
    cache: ResponseCaching | None = None
    selection: Selection | None = None
    multiplex: Multiplex | None = None

    @model_validator(mode="after")
    def _cache_and_selection_fit(self) -> ModelConfig:
        if self.cache is not None and self.generation is not None and self.generation.do_sample:
            raise ValueError("'cache' with sampled generation (do_sample: true) would repeat one sample; remove one")
        if self.selection is not None and (self.source is not None or not contract(self.task).has_files):
            raise ValueError("'selection' chooses among registry versions; serve the model from the registry "
                             "(no 'source')")
        return self

    @model_validator(mode="after")
    def _multiplex_fits(self) -> ModelConfig:
        task = contract(self.task)
        if self.multiplex is not None and (self.source is not None or not task.has_files or task.streams):
            raise ValueError("'multiplex' serves registry versions of a batch task (classification) from shared "
                             "replicas; remove 'source', or 'multiplex'")
        return self

    @model_validator(mode="after")
    def _generation_only_for_streaming_tasks(self) -> ModelConfig:
        if self.generation is not None and not contract(self.task).streams:
            tasks = " or ".join(f"'{t}'" for t in streaming_tasks())
            raise ValueError(f"'generation' applies to task {tasks} only; remove it")
        return self

    @model_validator(mode="after")
    def _traffic_needs_the_registry(self) -> ModelConfig:
        if self.traffic is not None:
            if self.source is not None:
                raise ValueError("'traffic' splits registry versions; remove 'source' or 'traffic'")
            if not self.traffic:
                raise ValueError("'traffic' needs at least one selector: weight entry")
        return self

    @model_validator(mode="after")
    def _no_files_for_a_task_without_weights(self) -> ModelConfig:
        if not contract(self.task).has_files and (self.source or self.traffic or self.registry_model):
            raise ValueError(f"{self.task} models have no files: remove source, traffic and registry_model")
        if self.task != Task.identity and self.delay_ms:
            raise ValueError("'delay_ms' applies to task 'identity' only")
        return self

    @model_validator(mode="after")
    def _runtime_fits_the_task(self) -> ModelConfig:
        allowed = contract(self.task).runtimes
        if self.runtime.value not in allowed:
            raise ValueError(f"runtime '{self.runtime.value}' does not serve task '{self.task}'; use "
                             + " or ".join(f"'{r}'" for r in allowed))
        return self

    @property
    def generation_settings(self) -> Generation:
        """Decoding settings, the defaults when the config gives none (generation tasks)."""
        return self.generation or Generation()

    @property
    def registry_name(self) -> str:
        return self.registry_model or self.name

    @property
    def selectors(self) -> dict[str, float]:
        """Registry selectors to serve at start, with their traffic weights (selection variants: none)."""
        weights = dict(self.traffic) if self.traffic else {self.version: 1.0}
        for variant in self.selection.variants if self.selection else []:
            weights.setdefault(variant, 0.0)
        return weights

    @property
    def coalesces(self) -> bool:
        explicit = self.batching.coalesce
        return explicit if explicit is not None else contract(self.task).coalesces

    @property
    def calls_in_flight(self) -> int:
        """Model calls one ingress replica keeps in flight when coalescing: every run slot of every replica plus
        one waiting call per replica, so a replica never idles through a round trip between batches (what
        waits there merges with what arrives next). At the autoscaling maximum, so queued calls still show
        Ray's autoscaler the load."""
        scaling = self.resources.autoscaling
        replicas = scaling.max_replicas if scaling is not None else self.resources.replicas
        return replicas * (self.batching.max_concurrent_batches + 1)

    @property
    def max_ongoing_requests(self) -> int:
        explicit = self.resources.max_ongoing_requests
        return explicit if explicit is not None else max(32, 2 * self.batching.max_batch_size)

    def resolved_source(self, models_dir: Path) -> Path | None:
        if self.source is None:
            return None
        path = Path(self.source.removeprefix("file://"))
        return path if path.is_absolute() else (models_dir / path).resolve()
