"""Items of every attribute type and mixed live traffic, shared by tests, the demo and benchmarks."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ddb_bridge.core.codec import from_python


def every_type_item(i: int, *, pk: str = "pk", payload: int = 0) -> dict[str, Any]:
    """An item with every attribute type, binary at several depths and 38-digit numbers."""
    return from_python(
        {
            pk: f"item#{i}",
            "n38": Decimal("1234567890123456789012345678901234567") + i,
            "tiny": Decimal("-1E-37"),
            "s": "żółć 漢字 🙂" + "x" * payload,
            "b": bytes([i % 256]) + b"\x00\xff" * 10,
            "bool": i % 2 == 0,
            "null": None,
            "ss": {"a", "b", str(i)},
            "ns": {Decimal(1), Decimal("2.5"), Decimal(i)},
            "bs": {b"\x00", b"\x01\x02", bytes([i % 256, 7])},
            "m": {"deep": {"bin": b"\xde\xad" + bytes([i % 256]), "l": [b"\x00", {"x": b"\x01"}]}},
            "l": [1, "two", b"\x03", [b"\x04"]],
        }
    )


def batch_put(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    """Write items 25 at a time (the source-side loader), retrying unprocessed ones."""
    for i in range(0, len(items), 25):
        pending: dict[str, Any] = {table: [{"PutRequest": {"Item": it}} for it in items[i : i + 25]]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


@dataclass
class LiveTraffic:
    """A writer thread making puts, updates and deletes on the source while replication runs."""

    client: Any
    table: str
    keys: int
    rate_per_s: float = 200.0
    seed: int = 1
    written: int = 0
    deleted: int = 0
    changes_at: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def step(self, rng: random.Random, i: int) -> None:
        """One change: 70% update an existing key, 20% put a new one, 10% delete."""
        roll = rng.random()
        n = rng.randrange(self.keys) if roll < 0.8 else self.keys + i
        if roll >= 0.9:
            self.client.delete_item(TableName=self.table, Key={"pk": {"S": f"item#{rng.randrange(self.keys)}"}})
            self.deleted += 1
        else:
            item = every_type_item(n)
            item["s"] = {"S": f"live change {i}"}
            self.client.put_item(TableName=self.table, Item=item)
        self.written += 1
        self.changes_at.append(time.time())

    def run(self, seconds: float) -> None:
        """Make changes at `rate_per_s` for `seconds` (or until stopped)."""
        rng = random.Random(self.seed)
        deadline = time.monotonic() + seconds
        i = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            self.step(rng, i)
            i += 1
            time.sleep(max(0.0, 1.0 / self.rate_per_s - (time.monotonic() - started)))

    def start(self, seconds: float) -> None:
        """Run in a background thread."""
        self._thread = threading.Thread(target=self.run, args=(seconds,), daemon=True)
        self._thread.start()

    def running(self) -> bool:
        """Whether the writer thread is still going."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop and wait for the writer."""
        self._stop.set()
        if self._thread:
            self._thread.join()
