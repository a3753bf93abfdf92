"""In-process fakes of what the dataplane and its protocols call: model versions, version managers, a pipeline
`call`, registries, metrics, clocks and batch functions. One place for them, parametrised where tests differ."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable
from types import SimpleNamespace

from serve_app.config import parse_config
from serve_app.config.settings import GatewaySettings
from serve_app.dataplane import DataPlane
from serve_app.dataplane.routing import ModelRoutes


# -- model versions ---------------------------------------------------------------------------------------------
def labelled(label: str = "a", **fields) -> Callable[[list[str]], list[dict]]:
    """A classifier's answer: the same label (and `fields`) for every text."""
    return lambda texts: [{"label": label, **copy.deepcopy(fields)} for _ in texts]


def prefixes(chars: int, **fields) -> Callable[[list[str]], list[dict]]:
    """A summarizer's answer: the first `chars` characters of each text."""
    return lambda texts: [{"summary": t[:chars], **fields} for t in texts]


def upper_summaries(texts):
    return [{"summary": t.upper(), "truncated": False} for t in texts]


def topics(texts):
    """Topic "b" when the text holds a b, else "a"."""
    return [{"label": "b" if "b" in t.lower() else "a", "score": 0.75, "truncated": False, "input_tokens": len(t),
             "probabilities": {"a": 0.25, "b": 0.75} if "b" in t.lower() else {"a": 0.75, "b": 0.25}}
            for t in texts]


# A full classification result, as the OIP and TF Serving encoders read it.
CLASSIFIED = labelled("a", score=1.0, probabilities={"a": 1.0}, truncated=False, input_tokens=1)


class FakeBackend:
    """A model version: answers `answer(texts)` as `version` after `delay_s` (real asyncio time), or raises
    `error`; `info()` answers `info` (default: the version) or raises `info_error`. Records every call's
    (texts, params) and how many calls were cancelled."""

    def __init__(self, version: str = "1", answer: Callable = labelled(), *, delay_s: float = 0.0,
                 error: Exception | None = None, info: dict | None = None, info_error: Exception | None = None):
        self.version, self.answer, self.delay_s, self.error = version, answer, delay_s, error
        self.info_answer = {"version": version} if info is None else info
        self.info_error = info_error
        self.calls: list[tuple[list[str], dict]] = []
        self.cancelled = 0

    @property
    def params(self) -> list[dict]:
        return [params for _, params in self.calls]

    async def infer(self, texts, params):
        self.calls.append((list(texts), params))
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error:
            raise self.error
        return {"version": self.version, "results": self.answer(texts)}

    async def info(self):
        if self.info_error:
            raise self.info_error
        return self.info_answer


class FakeStreamer(FakeBackend):
    """A summarizer that streams the input's words upper-cased, one per token (`token_delay_s` apart); the word
    "BOOM" fails mid-stream and the text "too long" is refused. Records every stream request, and counts the
    streams closed before their end (`closed`: a client that left, a deadline)."""

    def __init__(self, token_delay_s: float = 0.0):
        super().__init__("2", upper_summaries, info={})
        self.requests = []
        self.token_delay_s = token_delay_s
        self.closed = 0

    async def stream(self, request):
        self.requests.append(request)
        # A task's own stream kind carries "text" (summary, or a test's task); completions a prompt; chats messages.
        text = request["text"] if "text" in request else request.get("prompt")
        text = text if text is not None else request["messages"][-1]["content"]
        if text == "too long":
            yield {"type": "error", "kind": "invalid_input", "message": "the prompt has 9999 tokens"}
            return
        words = text.upper().split()
        n = request["params"]["max_new_tokens"]
        yield {"type": "start", "version": "2", "prompt_tokens": len(words), "input_tokens": len(words),
               "truncated": False}
        finished = False
        try:
            for i, word in enumerate(words[:n]):
                await asyncio.sleep(self.token_delay_s)
                if word == "BOOM":
                    raise RuntimeError("secret detail")
                yield {"type": "token", "text": (" " if i else "") + word, "completion_tokens": i + 1}
            finished = True
        finally:
            self.closed += not finished
        yield {"type": "done", "text": " ".join(words[:n]),
               "finish_reason": "length" if len(words) > n else "stop", "prompt_tokens": len(words),
               "completion_tokens": min(n, len(words))}


def routes_of(backends: dict[str, FakeBackend]) -> dict[str, ModelRoutes]:
    """One route per model, to its one fake version (labelled by the fake's version), taking all traffic."""
    routes = {}
    for name, backend in backends.items():
        routes[name] = ModelRoutes(name)
        routes[name].add(backend.version, backend, 1.0)
    return routes


# -- version managers -------------------------------------------------------------------------------------------
class FakeManager:
    """Loads versions as in-process fakes and records every load and unload. A selector's label is the selector
    less a leading "v", or with `registry` what the registry resolves it to, as the Ray Serve manager does.
    With `refuse`, any load or unload fails the test: `refuse` says why none may happen."""

    def __init__(self, registry=None, backend: Callable[[str], FakeBackend] = FakeBackend, refuse: str = ""):
        self.registry, self.backend, self.refuse = registry, backend, refuse
        self.loaded, self.unloaded = [], []
        self.running: set[str] = set()  # applications `orphans` sees deployed; `delete` records and removes
        self.deleted: list[str] = []

    async def load(self, model, selector):
        if self.refuse:
            raise AssertionError(f"never reached: {self.refuse}")
        if self.registry is not None:
            label = str(self.registry.resolve(f"{model.registry_name}@{selector}").iteration)
        else:
            label = selector.removeprefix("v")
        self.loaded.append((model.name, selector))
        return label, self.backend(label)

    async def unload(self, model, label):
        if self.refuse:
            raise AssertionError(f"never reached: {self.refuse}")
        self.unloaded.append((model.name, label))

    def attach(self, model, label, app):
        return self.backend(label)

    async def orphans(self, config, routed):
        return sorted(self.running - routed)

    async def delete(self, app):
        self.deleted.append(app)
        self.running.discard(app)


# -- the chain: a classifier "clf" (version 5), a summarizer "sum" (version 2), the pipeline "stc" chaining them -
CHAIN_CONFIG = {
    "models": [{"name": "clf", "task": "classification", "source": "c"},
               {"name": "sum", "task": "summarization", "source": "s"}],
    "pipelines": [{"name": "stc", "graph": {"type": "chain", "steps": [
        {"node": {"type": "model", "model": "sum"}},
        {"node": {"type": "model", "model": "clf"}, "input": "summary"}]}}],
}
VERSIONS = {"clf": "5", "sum": "2"}


def chain_backends() -> dict[str, FakeBackend]:
    """Summaries are the text upper-cased; the topic is "b" when the text holds a b, else "a"."""
    return {"clf": FakeBackend(VERSIONS["clf"], topics, info={}),
            "sum": FakeBackend(VERSIONS["sum"], upper_summaries, info={})}


def chain_dataplane(metrics=None, config=None, manager=None) -> DataPlane:
    """The chain over fakes; `config` may add sections (limits, ...) to CHAIN_CONFIG."""
    parsed = parse_config({**CHAIN_CONFIG, **(config or {})}, settings=GatewaySettings())
    return DataPlane(parsed, routes_of(chain_backends()), manager, metrics=metrics)


# -- a pipeline's model call ------------------------------------------------------------------------------------
class FakeModels:
    """The `call` a pipeline runs on. Summaries echo the first words; classifiers answer from keywords;
    'slow' and 'broken' misbehave. Records every call."""

    def __init__(self):
        self.calls = []

    async def __call__(self, model, texts, params):
        self.calls.append((model, list(texts)))
        name = model.partition("@")[0]
        if name == "slow":
            await asyncio.sleep(0.5)
        if name == "broken":
            raise RuntimeError("boom")
        if name == "summarizer":
            return {"version": "1", "results": [{"summary": " ".join(t.split()[:3])} for t in texts]}
        if name == "echo":
            return {"version": "1", "results": [{"text": t} for t in texts]}
        sport = 0.9 if name == "classifier" else 0.6
        return {"version": "2" if name == "clf2" else "1",
                "results": [{"label": "sport" if "goal" in t else "tech",
                             "probabilities": {"sport": sport, "tech": 1 - sport} if "goal" in t
                             else {"sport": 1 - sport, "tech": sport}} for t in texts]}


class SlowBatch:
    """A batch function that doubles its inputs after `delay_s`; records every batch it ran, how many ran at
    once and how many were cancelled."""

    def __init__(self, delay_s: float = 0.05):
        self.delay_s = delay_s
        self.batches: list[list] = []
        self.concurrent = 0
        self.max_concurrent_seen = 0
        self.cancelled = 0

    async def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        self.concurrent += 1
        self.max_concurrent_seen = max(self.max_concurrent_seen, self.concurrent)
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.concurrent -= 1
        return [2 * x for x in items]


# -- registries, metrics, clocks, sinks -------------------------------------------------------------------------
class FakeRegistry:
    """resolve() as the real registry answers it: stable and 3 are the same version, canary is 4."""

    def resolve(self, ref: str):
        iteration = {"stable": 3, "3": 3, "canary": 4}[ref.split("@")[1]]
        return SimpleNamespace(iteration=iteration, content_hash=f"sha256:{iteration:064d}")


class MemoryMetrics:
    """Keeps every recorded value in memory: lets unit tests assert what the dataplane records."""

    def __init__(self):
        self.records: list[tuple[str, str, dict, float]] = []

    def inc(self, name, labels, value=1.0):
        self.records.append(("inc", name, dict(labels), value))

    def observe(self, name, labels, value):
        self.records.append(("observe", name, dict(labels), value))

    def set(self, name, labels, value):
        self.records.append(("set", name, dict(labels), value))

    def total(self, name: str, **labels) -> float:
        return sum(v for op, n, lab, v in self.records
                   if op == "inc" and n == name and all(lab.get(k) == x for k, x in labels.items()))


class Clock:
    """A clock that moves only when a test moves it (`clock.now += seconds`)."""

    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self):
        return self.now


class Collector:
    """A generation sink that records one sequence's events and says when it is done."""

    def __init__(self, on_token=None):
        self.events: list[dict] = []
        self.done = threading.Event()
        self.on_token = on_token

    def __call__(self, event: dict) -> None:
        self.events.append(event)
        if self.on_token and (event["type"] == "token" or len(self.events) == 1):
            self.on_token(self)
        if event["type"] == "done":
            self.done.set()

    def wait(self) -> dict:
        assert self.done.wait(60), "the sequence never finished"
        return self.events[-1]

    @property
    def streamed(self) -> str:
        return "".join(e["text"] for e in self.events if e["type"] == "token")
