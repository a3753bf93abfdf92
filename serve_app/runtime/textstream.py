"""Token ids -> text deltas for a stream, with stop strings: plain Python, unit-tested without a model.

The streamed deltas concatenate to exactly the text a non-streamed answer carries (`decode(ids).strip()`, cut
at the first stop string): whitespace at the end is held back until something follows it, an unfinished UTF-8
character (the tokenizer decodes it as U+FFFD) waits for its next byte, and so does a tail that could still
grow into a stop string.

Decoding is incremental (as vLLM's detokenizer does it): each new token decodes a window of the last few ids,
never the whole answer again, so a stream costs linear, not quadratic, tokenizer time. The window starts a token
before the newest ones, since a tokenizer may render a token differently after another (a leading space).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

REPLACEMENT = "\ufffd"


def _stop_prefix_len(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


class TextStream:
    def __init__(self, decode: Callable[[list[int]], str], stops: Sequence[str] = (), strip: bool = True):
        self.decode = decode
        # Summaries and chat replies are stripped; a raw completion keeps its whitespace (" Paris" after "is").
        self.strip = strip
        self.stops = [s for s in stops if s]
        self.ids: list[int] = []
        self._decoded = ""  # text of ids[:self._read]
        self._prefix = self._read = 0  # the decode window is ids[self._prefix:]
        self.sent = ""  # what the client has received so far
        self.stopped = False  # a stop string appeared: the sequence is finished

    def _all_text(self) -> str:
        """Text of every id so far (an unfinished character at the end stays U+FFFD until its next byte)."""
        before = self.decode(self.ids[self._prefix:self._read])
        window = self.decode(self.ids[self._prefix:])
        if len(window) > len(before) and not window.endswith(REPLACEMENT) and window.startswith(before):
            self._decoded += window[len(before):]
            self._prefix, self._read = self._read, len(self.ids)
            return self._decoded
        return self._decoded + window[len(before):]

    def text(self) -> str:
        """The whole answer so far, as the non-streamed response would carry it."""
        full = self._all_text()
        full = full.lstrip() if self.strip else full
        for stop in self.stops:
            at = full.find(stop)
            if at >= 0:
                self.stopped = True
                full = full[:at]
        return full

    def push(self, token_ids: list[int]) -> str:
        """Add generated ids; return the new text that is safe to send now."""
        self.ids.extend(token_ids)
        full = self.text()
        if self.stopped:
            return self._advance(self._end(full))
        safe = self._end(full)
        if safe.endswith(REPLACEMENT):
            safe = safe.rstrip(REPLACEMENT)
        held = _stop_prefix_len(full, self.stops)
        if held:
            safe = self._end(safe[: min(len(safe), len(full) - held)])
        return self._advance(safe)

    def finish(self) -> str:
        """The last delta once the sequence has ended: everything not sent yet, whitespace-stripped at the end."""
        return self._advance(self._end(self.text()))

    def _end(self, text: str) -> str:
        return text.rstrip() if self.strip else text

    def _advance(self, upto: str) -> str:
        # Decoding more ids can rewrite a held-back tail (U+FFFD becoming a character); never resend what was sent.
        if not upto.startswith(self.sent) or len(upto) <= len(self.sent):
            return ""
        delta, self.sent = upto[len(self.sent):], upto
        return delta
