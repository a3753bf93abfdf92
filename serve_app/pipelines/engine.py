"""Run a pipeline graph over any `call(model, texts, params)` coroutine; branches that can overlap do.

Each node turns a list of texts into one record (a dict of fields) per text. The optional trace lists every
node with its latency and, for model calls, the version that answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from serve_app.errors import DeadlineExceeded, GatewayError, InferenceFailed
from serve_app.pipelines import fusion
from serve_app.pipelines.spec import (
    ChainNode,
    FanoutNode,
    FuseNode,
    ModelNode,
    Node,
    Pipeline,
    PipelineRef,
    SplitNode,
    SwitchNode,
)
from serve_app.pipelines.switch import route
from serve_app.tasks import WindowJoin, window_joins
from serve_app.tracing import span

Call = Callable[[str, list[str], dict], Awaitable[dict]]  # -> {"version": ..., "results": [...]}


class BranchesFailed(GatewayError):
    """Too few fan-out branches succeeded. HTTP 502 / UNAVAILABLE, naming the failed branches."""

    http_status = 502
    kind = "branches_failed"


def windows(text: str, size: int, overlap: int) -> list[str]:
    """Cut `text` into windows of at most `size` characters overlapping by about `overlap`, at whitespace."""
    if len(text) <= size:
        return [text]
    out, start = [], 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            cut = text.rfind(" ", start + size // 2, end)
            end = cut if cut > start else end
        out.append(text[start:end].strip())
        if end >= len(text):
            break
        nxt = end - overlap
        space = text.find(" ", nxt, end)
        start = space + 1 if overlap and space != -1 else (nxt if overlap else end)
    return [w for w in out if w]


def window_join(record: dict) -> WindowJoin:
    """How the task contracts join records like this one (validation made sure one does)."""
    return next(j for j in window_joins() if j.field in record)


def join_records(records: list[dict]) -> dict:
    """One document's window results, in order, joined as their task's contract says (summaries concatenated,
    probabilities averaged)."""
    return {**window_join(records[0]).join(records), "windows": len(records)}


class Run:
    """One request's execution: the call function, the pipelines, and its trace."""

    def __init__(self, pipelines: dict[str, Pipeline], call: Call, name: str, context: dict | None = None):
        self.pipelines, self.call, self.name = pipelines, call, name
        self.context = context or {}  # the request's "params" and "headers" (lower-case names), for switches
        self.trace: list[dict] = []

    async def node(self, node: Node, texts: list[str], path: str, records: list[dict] | None = None) -> list[dict]:
        """`records`: inside a chain, what earlier steps answered for each text (a switch tests their fields)."""
        started = time.perf_counter()
        entry: dict = {"node": path, "type": node.type}
        try:
            with span("gateway.pipeline_node", attributes={
                    "gateway.pipeline": self.name, "gateway.node": path, "gateway.node_type": node.type}):
                if node.timeout_s is None:
                    return await self._dispatch(node, texts, path, entry, records)
                return await asyncio.wait_for(self._dispatch(node, texts, path, entry, records), node.timeout_s)
        except TimeoutError:
            entry["error"] = "timeout"
            raise DeadlineExceeded(f"pipeline '{self.name}', node '{path}' timed out after {node.timeout_s} s",
                                   node=path) from None
        finally:
            entry["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
            self.trace.append(entry)

    async def _dispatch(self, node: Node, texts: list[str], path: str, entry: dict,
                        records: list[dict] | None = None) -> list[dict]:
        if isinstance(node, ModelNode):
            out = await self.call(node.model, texts, dict(node.params))
            entry.update(model=node.model.partition("@")[0], version=out.get("version"),
                         **{k: out[k] for k in ("cache", "selection") if k in out})
            return [dict(r) for r in out["results"]]
        if isinstance(node, ChainNode):
            records = [{"text": t} for t in texts]
            for i, step in enumerate(node.steps):
                inputs = [r[step.input] for r in records]
                outputs = await self.node(step.node, inputs, f"{path}.steps[{i}]", records)
                records = [{**r, **o} for r, o in zip(records, outputs)]
            return records
        if isinstance(node, SplitNode):
            return await (self._serial(node, texts, path) if node.mode == "serial"
                          else self._parallel(node, texts, path))
        if isinstance(node, FanoutNode):
            return await self._fanout(node, texts, path)
        if isinstance(node, FuseNode):
            return await self._fuse(node, texts, path)
        if isinstance(node, SwitchNode):
            return await self._switch(node, texts, records or [{"text": t} for t in texts], path, entry)
        if isinstance(node, PipelineRef):
            return await self.node(self.pipelines[node.pipeline].graph, texts, f"{path}<{node.pipeline}>")
        raise InferenceFailed(f"node type {node.type} cannot run")

    async def _serial(self, node: SplitNode, texts: list[str], path: str) -> list[dict]:
        per_text = [windows(t, node.window_chars, node.overlap_chars) for t in texts]
        flat = [w for ws in per_text for w in ws]
        outputs = await self.node(node.node, flat, f"{path}.node")
        joined, start = [], 0
        for ws in per_text:
            joined.append(join_records(outputs[start:start + len(ws)]))
            start += len(ws)
        if node.reduce is None or not joined:
            return joined
        field = window_join(joined[0]).field  # a text join: validation allows reduce after no other
        reduced = await self.node(node.reduce, [j[field] for j in joined], f"{path}.reduce")
        return [{**r, "windows": j["windows"], f"partial_{field}": j[field]} for r, j in zip(reduced, joined)]

    async def _parallel(self, node: SplitNode, texts: list[str], path: str) -> list[dict]:
        chunks = [texts[i:i + node.chunk_size] for i in range(0, len(texts), node.chunk_size)]
        parts = await asyncio.gather(*(self.node(node.node, c, f"{path}.chunk[{i}]")
                                       for i, c in enumerate(chunks)))
        return [r for part in parts for r in part]

    async def _fanout(self, node: FanoutNode, texts: list[str], path: str) -> list[dict]:
        names = list(node.branches)
        tasks = {n: asyncio.ensure_future(self.node(node.branches[n], texts, f"{path}.branches.{n}"))
                 for n in names}
        if node.policy == "fail_fast":
            try:
                results = dict(zip(names, await asyncio.gather(*tasks.values())))
            except BaseException:
                for t in tasks.values():
                    t.cancel()
                raise
            failed: dict[str, str] = {}
        else:
            done = await asyncio.gather(*tasks.values(), return_exceptions=True)
            results = {n: r for n, r in zip(names, done) if not isinstance(r, BaseException)}
            failed = {n: (r.message if isinstance(r, GatewayError) else "failed")
                      for n, r in zip(names, done) if isinstance(r, BaseException)}
            needed = node.min_success or 1
            if len(results) < needed:
                raise BranchesFailed(f"pipeline '{self.name}', node '{path}': {len(results)} of {len(names)} "
                                     f"branches succeeded, {needed} needed", failed_branches=failed)
        return [{"branches": {n: results[n][i] for n in results}, "failed_branches": failed}
                for i in range(len(texts))]

    async def _switch(self, node: SwitchNode, texts: list[str], records: list[dict], path: str,
                      entry: dict) -> list[dict]:
        """Each text through the node of the first case that holds for it (one call per case, its texts batched),
        answers back in order; texts no case takes pass with `branch` null (or through `default`)."""
        routed = route(node.cases, node.default is not None, records, self.context)
        entry["branches"] = {str(name): len(ix) for name, ix in routed.items()}
        nodes = {**{n: c.node for n, c in node.cases.items()}, "default": node.default}
        taken = [name for name in routed if name is not None]
        answers = await asyncio.gather(*(self.node(nodes[name], [texts[i] for i in routed[name]],
                                                   f"{path}.cases.{name}" if name != "default" else f"{path}.default")
                                         for name in taken))
        out: list[dict] = [{"branch": None} for _ in texts]
        for name, answered in zip(taken, answers, strict=True):
            for i, answer in zip(routed[name], answered, strict=True):
                out[i] = {**answer, "branch": name}
        return out

    async def _fuse(self, node: FuseNode, texts: list[str], path: str) -> list[dict]:
        fanned = await self.node(node.source, texts, f"{path}.source")
        out = []
        for record in fanned:
            tables = {b: fusion.map_labels(r["probabilities"], node.label_map.get(b))
                      for b, r in record["branches"].items()}
            weights = {b: node.weights[b] for b in tables} if node.weights else None
            try:
                fused = fusion.fuse(tables, node.method, weights)
            except ValueError as err:  # e.g. label sets that disagree at run time
                raise InferenceFailed(f"pipeline '{self.name}', node '{path}': {err}") from None
            out.append({**fused, "method": node.method, "branches": record["branches"],
                        "failed_branches": record["failed_branches"]})
        return out


async def run_pipeline(pipelines: dict[str, Pipeline], call: Call, name: str, texts: list[str],
                       context: dict | None = None) -> tuple[list, list]:
    """(one record per text, trace entries in completion order). `context`: the request's "params" and
    "headers" (names in lower case), which switch conditions may test."""
    run = Run(pipelines, call, name, context)
    records = await run.node(pipelines[name].graph, texts, "graph")
    return records, run.trace
