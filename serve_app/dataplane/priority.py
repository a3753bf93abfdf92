"""Request priority: three classes, served highest first where requests queue at the gateway, and shed lowest
first under overload (Triton's per-request priority levels, vLLM's `priority`).

    high (1)    interactive calls that must not wait behind bulk work
    normal (2)  the default
    low (3)     batch jobs: first refused when the gateway is over capacity

A request names its class as `X-Priority: high` (header, gRPC metadata), the parameter `priority` (OIP REST and
gRPC, the simple JSON body, the OpenAI body) as a name or a number: 1-3 as above, 0 for the default (Triton's
"default level"). Anything else is a 400 naming the field.

The class travels with the request through a context variable (`CURRENT`), so the queues it meets (the ingress'
coalescing batcher, admission) read it without every call in between passing it along; tasks a request starts
(pipeline branches) inherit it.
"""

from __future__ import annotations

from contextvars import ContextVar

from serve_app.errors import InvalidInput

HIGH, NORMAL, LOW = 1, 2, 3
NAMES = {"high": HIGH, "normal": NORMAL, "low": LOW}
CLASSES = {v: k for k, v in NAMES.items()}
PARAM, HEADER = "priority", "x-priority"

CURRENT: ContextVar[int] = ContextVar("gateway_priority", default=NORMAL)

# OS niceness of the threads that run low-class batches in a model replica, which also run under Linux's
# SCHED_IDLE policy (deployments/base.py). A queue can order what starts next, but a batch already running shares
# the cores with everything else: under overload the low class's batches would take CPU from a high-class batch
# beside them and from the gateway's own front that answers (and sheds) requests. Idle-priority threads get only
# what the others leave, so alone they still run at full speed. Lowering a thread's priority needs no privilege.
LOW_CLASS_NICE = 19


def parse_priority(value: object, field: str = PARAM) -> int:
    """A class from a name or a number (None or 0: normal); InvalidInput naming `field` otherwise."""
    if value is None:
        return NORMAL
    if isinstance(value, str):
        text = value.strip().lower()
        if text in NAMES:
            return NAMES[text]
        value = int(text) if text.lstrip("-").isdigit() else text
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= LOW:
        return value or NORMAL
    raise InvalidInput(f"{field}: {value!r} is not a priority; use high, normal or low (or 1, 2, 3; 0 = normal)",
                       field=field)


def request_priority(params: dict, headers: dict) -> int:
    """The parameter wins over the header, as for the other request hints."""
    if params.get(PARAM) is not None:
        return parse_priority(params[PARAM], PARAM)
    return parse_priority(headers.get(HEADER), HEADER)
