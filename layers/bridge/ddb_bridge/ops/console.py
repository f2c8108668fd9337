"""What the CLI prints: a progress bar (redrawn on a terminal, a line now and then otherwise), times, numbers.

Also the usage error a command raises when an option it needs is missing (exit 2, as argparse's own).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

BAR_WIDTH = 28


class UsageError(Exception):
    """An option is missing, or options that cannot go together were given; the message says what to give."""


class ProgressBar:
    """One line redrawn in place on a terminal; elsewhere (logs, CI) a line at most every `interval_s`."""

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.out = out or sys.stdout
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.interval_s = interval_s
        self.clock = clock
        self._last = float("-inf")
        self._width = 0
        self._printed = ""

    def update(self, fraction: float | None, text: str) -> None:
        """Show `fraction` (0-1, None when unknown) and a status text."""
        line = f"{bar(fraction)} {text}"
        if self.tty:
            self.out.write("\r" + line.ljust(self._width))
            self._width = len(line)
            self.out.flush()
        elif self.clock() - self._last >= self.interval_s:
            self._last = self.clock()
            self._printed = line
            print(line, file=self.out, flush=True)

    def finish(self, fraction: float | None, text: str) -> None:
        """The last state, always printed, on its own line."""
        line = f"{bar(fraction)} {text}"
        if self.tty:
            self.out.write("\r" + line.ljust(self._width) + "\n")
        elif line != self._printed:
            print(line, file=self.out)
        self.out.flush()


def bar(fraction: float | None) -> str:
    """[#######.....]  42%, or an empty frame when the fraction is unknown."""
    if fraction is None:
        return "[" + "." * BAR_WIDTH + "]     "
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * BAR_WIDTH)
    return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + f"] {fraction * 100:3.0f}%"


def when(ms: int | None) -> str:
    """An epoch-ms time as UTC ISO 8601 (seconds), or '-'."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(ms: float | None) -> str:
    """A duration for people: 850 ms, 12.4 s, 3 min 5 s."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{int(ms // 60_000)} min {int(ms % 60_000 // 1000)} s"


def parse_time(text: str, *, now: Callable[[], float] = time.time) -> int:
    """A time given on the command line -> epoch ms: `now`, epoch seconds or ms, or ISO 8601 (UTC if no zone)."""
    value = text.strip()
    if value.lower() == "now":
        return int(now() * 1000)
    if value.isdigit():
        number = int(value)
        return number if number > 10**11 else number * 1000  # ms since 1973, else seconds
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use now, epoch seconds or ISO 8601 such as 2026-12-02T10:15:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
