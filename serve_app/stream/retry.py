"""Which gateway answers are worth retrying, and how long to wait before the next attempt.

429 (queue full) and 503 (no replica, or one lost mid-call) say when to come back in `Retry-After`; that wait is
honoured (capped, so a wrong header cannot park a record past its deadline). 502/504 and connection failures
(a gateway restarting) back off exponentially with jitter. Other 4xx are the record's fault: never retried.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRY_AFTER = frozenset({429, 503})
TRANSIENT = frozenset({429, 502, 503, 504})


def retry_after_seconds(header: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not header:
        return None
    header = header.strip()
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    import time

    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 0.05          # first back-off without Retry-After
    max_backoff_s: float = 2.0    # cap of the exponential back-off
    max_retry_after_s: float = 30.0
    max_server_errors: int = 3    # attempts for a 500 (a fault on the gateway's side) before dead-lettering

    def delay(self, attempt: int, status: int | None, retry_after: str | None = None) -> float:
        """Wait before attempt `attempt + 1` (attempt counts from 1). status None: the connection failed."""
        if status in RETRY_AFTER:
            hinted = retry_after_seconds(retry_after)
            if hinted is not None:
                return min(hinted, self.max_retry_after_s)
        ceiling = min(self.max_backoff_s, self.base_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # jitter: retries of many batches do not arrive together

    @staticmethod
    def is_transient(status: int | None) -> bool:
        return status is None or status in TRANSIENT
