"""Dynamic batching that fills under load: a batch is formed when a run slot frees, from everything queued.

Ray Serve's `@serve.batch` forms the next batch as soon as the previous one is *dispatched*: the first request
that arrives while the model is busy opens a batch, `batch_wait_timeout_s` later that batch is closed, and it
then waits for the model with whatever it caught (measured here: 268 of 340 model calls ran one text with 32
clients waiting). `SlotBatcher` waits for a free slot first and only then takes the queue, so requests that
arrived while the model ran all go into the next batch; with no load a request runs at once (no window).

Plain asyncio, no Ray: the model replicas use it around their runtime, and the ingress uses it to coalesce
concurrent requests for one model version into one handle call (one hop per batch, not per request).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from serve_app.dataplane.priority import CLASSES, CURRENT, HIGH, NORMAL
from serve_app.errors import Overloaded

EXPRESS = 1  # runs beyond max_concurrent that high-class requests may take when every slot is busy


@dataclass
class _Request:
    items: list
    future: asyncio.Future
    priority: int = NORMAL
    notes: dict | None = None  # filled as its batch starts: batch_items, queue_wait_s (trace attributes)
    queued_at: float = 0.0


@dataclass
class _Batch:
    requests: list[_Request]
    task: asyncio.Task | None = None
    waiting: set = field(default_factory=set)

    def forget(self, future: asyncio.Future) -> None:
        """A caller went away; when none is left, the run is cancelled (nobody would read its answer)."""
        self.waiting.discard(future)
        if not self.waiting and self.task is not None and not self.task.done():
            self.task.cancel()


class SlotBatcher:
    """`await submit(items)` returns `run`'s results for those items, in order.

    - `max_batch`: items per run (a request larger than that runs alone, whole: the runtime micro-batches).
    - `max_concurrent`: runs in flight; a new batch forms only when one of them finishes.
    - `wait_s`: how long a batch with a free slot waits for more items (0: greedy, the default on CPU).
    - `max_queued`: requests waiting beyond this are refused with `Overloaded` (None: no bound); a request of a
      higher priority class than the lowest one waiting takes the place of its newest request, which is refused.
    - Priority (dataplane/priority.py, the request's class unless given): batches take the highest class first.
      High-class requests run in batches of their own (small, so soon done), and when every slot is busy they
      get one run more (`EXPRESS`): they wait for no batch of lower classes. The run carries its class in
      `CURRENT`, so `run` can pass it on (the ingress to the model replica's own batcher).
    - `on_batch(n_items, running)`: called as each run starts, e.g. to record the batch size.
    - `isolate(error)`: when a run of several requests fails with an error for which this is true, each request
      runs again alone and gets its own result or error: one bad input fails only its own request, never
      the requests that shared its batch (None: every caller of a failed run gets its error).
    """

    def __init__(self, run: Callable[[list], Awaitable[list]], max_batch: int, max_concurrent: int = 1,
                 wait_s: float = 0.0, max_queued: int | None = None,
                 on_batch: Callable[[int, int], None] | None = None, name: str = "model",
                 isolate: Callable[[Exception], bool] | None = None):
        if max_batch < 1 or max_concurrent < 1:
            raise ValueError("max_batch and max_concurrent must be >= 1")
        self.run = run
        self.max_batch = max_batch
        self.max_concurrent = max_concurrent
        self.wait_s = wait_s
        self.max_queued = max_queued
        self.on_batch = on_batch or (lambda n, running: None)
        self.name = name
        self.isolate = isolate
        self.queues: dict[int, deque[_Request]] = {c: deque() for c in sorted(CLASSES)}  # highest class first
        self.running = 0
        self._arrived: asyncio.Event | None = None
        self._dispatcher: asyncio.Task | None = None

    def _live(self):
        return (r for q in self.queues.values() for r in q if not r.future.done())

    @property
    def queued(self) -> int:
        return sum(1 for _ in self._live())

    def _make_room(self, priority: int) -> None:
        """At `max_queued`: refuse the newest waiting request of the lowest class below `priority`, or this one."""
        for cls in sorted(self.queues, reverse=True):
            if cls <= priority:
                break
            victims = [r for r in self.queues[cls] if not r.future.done()]
            if victims:
                self.queues[cls].remove(victims[-1])
                victims[-1].future.set_exception(Overloaded(
                    f"model '{self.name}' is at capacity; a {CLASSES[cls]}-priority request waiting was shed for a "
                    "higher one; retry shortly", retry_after_s=1))
                return
        raise Overloaded(f"model '{self.name}' has {self.queued} requests waiting; retry shortly", retry_after_s=1)

    async def submit(self, items: list, priority: int | None = None, notes: dict | None = None) -> list:
        """`notes`, if given, gets the batch's item count and this request's wait in the queue when it runs."""
        priority = CURRENT.get() if priority is None else priority
        if self.max_queued is not None and self.queued >= self.max_queued:
            self._make_room(priority)
        loop = asyncio.get_running_loop()
        if self._dispatcher is None or self._dispatcher.done():
            self._arrived = asyncio.Event()
            self._dispatcher = loop.create_task(self._dispatch())
        request = _Request(list(items), loop.create_future(), priority, notes, loop.time())
        self.queues[priority].append(request)
        self._arrived.set()
        # Cancelling the caller cancels the future: a queued request is then skipped, a running one forgotten.
        return await request.future

    def _take(self) -> list[_Request]:
        """Live requests from the heads of the queues, highest class first, up to `max_batch` items (at least
        one request); a batch with high-class requests takes no others."""
        batch, size = [], 0
        for queue in self.queues.values():
            if batch and batch[0].priority == HIGH:
                return batch
            while queue:
                head = queue[0]
                if head.future.done():  # cancelled (or shed) while queued
                    queue.popleft()
                    continue
                if batch and size + len(head.items) > self.max_batch:
                    return batch
                batch.append(queue.popleft())
                size += len(head.items)
        return batch

    def _limit(self) -> int:
        """Runs allowed at once now: one more while a high-class request waits."""
        high_waiting = any(not r.future.done() for r in self.queues[HIGH])
        return self.max_concurrent + (EXPRESS if high_waiting else 0)

    async def _dispatch(self) -> None:
        while True:
            # One event for both wake-ups (a request arrived, a run finished): a high-class arrival may start
            # a run while every slot is busy.
            if not self.queued or self.running >= self._limit():
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if self.wait_s > 0:
                await self._top_up()
            requests = self._take()
            if not requests:
                continue
            self.running += 1
            batch = _Batch(requests, waiting={r.future for r in requests})
            batch.task = asyncio.get_running_loop().create_task(self._run(batch))
            batch.task.add_done_callback(lambda _t: (self._finished(), self._arrived.set()))
            for r in requests:
                r.future.add_done_callback(lambda f, b=batch: f.cancelled() and b.forget(f))

    async def _top_up(self) -> None:
        """With a slot free, wait up to `wait_s` for the queue to reach a full batch."""
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while sum(len(r.items) for r in self._live()) < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _finished(self) -> None:
        self.running -= 1

    async def _run(self, batch: _Batch) -> None:
        CURRENT.set(batch.requests[0].priority)  # (this task's own context) the class `run` works for
        flat = [item for r in batch.requests for item in r.items]
        self.on_batch(len(flat), self.running)
        now = asyncio.get_running_loop().time()
        for r in batch.requests:
            if r.notes is not None:
                r.notes.update(batch_items=len(flat), queue_wait_s=now - r.queued_at)
        try:
            results = await self.run(flat)
            if len(results) != len(flat):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(flat)} inputs")
        except asyncio.CancelledError:
            return  # every caller of this batch is gone
        except Exception as err:  # noqa: BLE001 - every caller of the batch gets the failure
            live = [r for r in batch.requests if not r.future.done()]
            if len(live) > 1 and self.isolate is not None and self.isolate(err):
                await self._run_alone(live)
                return
            for r in live:
                r.future.set_exception(err)
            return
        start = 0
        for r in batch.requests:
            if not r.future.done():
                r.future.set_result(results[start:start + len(r.items)])
            start += len(r.items)

    async def _run_alone(self, requests: list[_Request]) -> None:
        """After a failed batch: each request again on its own, in turn (only failures pay for this)."""
        for r in requests:
            if r.future.done():
                continue
            try:
                results = await self.run(r.items)
                if len(results) != len(r.items):
                    raise RuntimeError(f"{self.name}: {len(results)} results for {len(r.items)} inputs")
            except asyncio.CancelledError:
                return
            except Exception as err:  # noqa: BLE001 - this request's own failure
                if not r.future.done():
                    r.future.set_exception(err)
                continue
            if not r.future.done():
                r.future.set_result(results)

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            self._dispatcher = None
