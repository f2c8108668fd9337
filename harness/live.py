"""Lambda's event sources running live: each one polls on its own thread at Lambda's rates.

Lambda polls a DynamoDB stream's shard four times a second and a Kinesis stream's shard once a second,
each event source on its own and concurrently, and invokes the function again at once while records
remain. `LivePolling` does the same for a world's four event sources (both regions' table streams and
relay streams), so a demo's lag is set by those schedules and by the functions, not by one thread taking
the sources in turn.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

STREAM_POLL_SECONDS = 0.25  # DynamoDB Streams: 4 polls a second per shard
KINESIS_POLL_SECONDS = 1.0  # Kinesis: 1 poll a second per shard


@dataclass
class LivePolling:
    """Every event source of the given pollers on a thread of its own, until stopped."""

    sources: list[tuple[str, Any, float]]  # (name, poller, seconds between idle polls)
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _idle: dict[str, threading.Event] = field(default_factory=dict)

    @classmethod
    def of(cls, world: Any) -> LivePolling:
        """The four event sources of a two-region world."""
        sources: list[tuple[str, Any, float]] = []
        for side in world.sides:
            sources.append((f"stream {side.name}", side.stream_poller, STREAM_POLL_SECONDS))
            sources.append((f"kinesis {side.name}", side.kinesis_poller, KINESIS_POLL_SECONDS))
        return cls(sources)

    def __enter__(self) -> LivePolling:
        for name, poller, seconds in self.sources:
            idle = threading.Event()
            self._idle[name] = idle
            thread = threading.Thread(target=self._run, args=(poller, seconds, idle), name=name, daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def _run(self, poller: Any, seconds: float, idle: threading.Event) -> None:
        while not self._stop.is_set():
            try:
                moved = poller.poll_once() + len(getattr(poller, "_late", ()))
            except BaseException as exc:  # noqa: BLE001 - reported by stop(); the source stops as Lambda's would
                self.errors.append(exc)
                return
            if moved:
                idle.clear()
                continue  # records remain: Lambda invokes again as soon as the batch is done
            idle.set()
            self._stop.wait(seconds)

    def all_idle(self) -> bool:
        """Whether every source's last poll found nothing."""
        return all(event.is_set() for event in self._idle.values())

    def stop(self) -> None:
        """Stop every source (each finishes the invocation it is in); raise what made a source stop."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        if self.errors:
            raise self.errors[0]

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
