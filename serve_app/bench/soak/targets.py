"""What a soak sends and what counts as the right answer: the known inputs, one model (Target), and `call`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx

TEXTS = [
    "Shares in the bank fell 5% after quarterly profits missed analysts' forecasts.",
    "The striker scored twice as the home side won the cup final in extra time.",
    "Parliament will vote next week on the government's plans to reform the health service.",
    "The band's new album went straight to number one in the charts on its release.",
    "The company unveiled a faster chip for smartphones at its annual developer conference.",
    "Oil prices rose sharply after producers agreed to cut output for another six months.",
    "The film won best picture and best director at the awards ceremony on Sunday night.",
    "The minister resigned after a row over the handling of the inquiry into party funding.",
]



@dataclass
class Target:
    """How to call one model and what counts as the right answer."""

    base_url: str
    model: str
    task: str  # identity | classification
    headers: dict = field(default_factory=dict)

    def request(self, text: str) -> tuple[str, dict]:
        if self.task == "identity":
            return f"/v2/models/{self.model}/infer", {"inputs": [
                {"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}
        return "/v1/classify", {"texts": [text], "model": self.model}

    def answer(self, body: dict) -> object:
        if self.task == "identity":
            return body["outputs"][0]["data"][0]
        result = body["results"][0]
        return result["label"], {k: round(v, 4) for k, v in result["probabilities"].items()}

    @staticmethod
    def same(expected: object, got: object) -> bool:
        if isinstance(expected, tuple):  # label exact, probabilities within 1e-3 (batching changes fp order)
            return expected[0] == got[0] and all(abs(expected[1][k] - got[1].get(k, -1)) < 1e-3 for k in expected[1])
        return expected == got


def reference_key(target, text: str, i: int) -> tuple:
    """Which reference answer request i must match: per text, and per kind of call in a mixed soak."""
    kinds = getattr(target, "kinds", None)
    return (kinds[i % len(kinds)][0], text) if kinds else (text,)


def call(client: httpx.Client, target, text: str, i: int = 0) -> tuple[object | None, float, int | str]:
    if hasattr(target, "call"):
        return target.call(client, text, i)
    path, body = target.request(text)
    return post(client, path, body, target.answer)


def post(client: httpx.Client, path: str, body: dict, answer) -> tuple[object | None, float, int | str]:
    """One timed POST: (answer(its JSON) or None, seconds, 200 or the status or the transport error's name)."""
    started = time.perf_counter()
    try:
        r = client.post(path, json=body)
    except httpx.HTTPError as err:
        return None, time.perf_counter() - started, type(err).__name__
    elapsed = time.perf_counter() - started
    if r.status_code != 200:
        return None, elapsed, r.status_code
    return answer(r.json()), elapsed, 200
