"""Rate limits in capacity units: a token bucket, and the units a page reads and writes."""

from __future__ import annotations

import math
from collections.abc import Callable


# ---- rate --------------------------------------------------------------------------------------------------
class RateLimiter:
    """A token bucket in capacity units per second (one second of burst); None means no limit."""

    def __init__(self, per_second: float | None, now: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.rate = per_second if per_second and per_second > 0 else None
        self.now = now
        self.sleep = sleep
        self.available = self.rate or 0.0
        self.last = now()
        self.waited = 0.0

    def spend(self, units: float) -> None:
        """Take `units`, sleeping as long as the debt takes to repay."""
        if self.rate is None or units <= 0:
            return
        now = self.now()
        self.available = min(self.rate, self.available + (now - self.last) * self.rate) - units
        self.last = now
        if self.available < 0:
            pause = -self.available / self.rate
            self.waited += pause
            self.sleep(pause)


def read_units(sizes: list[int], consistent: bool) -> float:
    """Read units of a Scan page of items of these sizes: 4 KB each, half for eventually consistent reads."""
    units = math.ceil(sum(sizes) / 4096)
    return units if consistent else units / 2


def write_units(sizes: list[int], transactional: bool) -> int:
    """Write units of putting items of these sizes: 1 KB each, twice for transactions."""
    units = sum(math.ceil(max(1, size) / 1024) for size in sizes)
    return units * 2 if transactional else units
