"""A region's own table and side table as the bidirectional functions read and write them: batched, concurrent.

Reads are consistent `BatchGetItem` calls of up to 100 keys (both tables in one request); writes are
`BatchWriteItem` calls of up to 25 items; the calls of one step go out concurrently (`WRITE_CONCURRENCY`, on a
thread pool kept for the warm runtime: starting threads at every step cost more than the calls it overlapped),
unprocessed keys and items are sent again with exponential backoff and full jitter, and a call refused
as a whole (one item DynamoDB cannot take) is split until only the item at fault is refused, so one bad
change never fails its neighbours. No transaction anywhere. Conditional single-item writes serve the
few writes that must not overwrite a state they did not judge (deletes, repairs).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ..core.clients import client_config
from ..core.codec import Image
from ..core.errors import PermanentError, RetryableError, classify, error_code
from ..core.settings import VersionAttrs
from .sidetable import SideTable
from .states import Versions

BATCH_GET_MAX = 100
BATCH_WRITE_MAX = 25
T = TypeVar("T")
R = TypeVar("R")
_worker = threading.local()  # set in the pool's threads: a job that needs the pool runs its calls inline


def _mark_worker() -> None:
    _worker.active = True


class LocalTableSettings(Protocol):
    """What the bidirectional functions (stream_relay, relay_applier) know of their region's table."""

    @property
    def table(self) -> str:
        """The table's name."""

    @property
    def tombstone_table(self) -> str:
        """Its side table's name."""

    @property
    def tombstone_days(self) -> int:
        """How long a side record lives."""

    @property
    def versions(self) -> VersionAttrs:
        """The application's stamp attributes."""

    @property
    def stamps(self) -> Versions:
        """How versions are read off items."""

    @property
    def write_concurrency(self) -> int:
        """Concurrent requests per step."""


def item_key(image: Image, names: Sequence[str]) -> str:
    """An item's key identity in the client form (binary as bytes), to match responses to requests."""
    return json.dumps({n: image[n] for n in names}, sort_keys=True, default=lambda b: bytes(b).hex())


@dataclass(frozen=True)
class Write:
    """One item write of a BatchWriteItem step: a PutRequest or a DeleteRequest, and whom it is for."""

    table: str
    request: dict[str, Any]
    owner: Hashable  # what a failure is reported against (an item key id)


@dataclass
class Store:
    """One region's table and its side table, read and written in batches (one per function invocation)."""

    client: Any
    table: str
    side: SideTable
    stamps: Versions
    concurrency: int
    sleep: Callable[[float], None] = time.sleep
    rounds: int = 8
    pool: ThreadPoolExecutor | None = None  # the warm runtime's; None: a pool per step
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _count(self) -> None:
        with self._lock:
            self.requests += 1

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`fn` of every item, concurrently when there are several (inline in a pool thread: no nested waits)."""
        if len(items) <= 1 or self.concurrency <= 1 or getattr(_worker, "active", False):
            return [fn(item) for item in items]
        if self.pool is not None:
            return list(self.pool.map(fn, items))
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items)), initializer=_mark_worker) as pool:
            return list(pool.map(fn, items))

    # -- reads ----------------------------------------------------------------------------------------
    def read(self, keys: dict[str, list[dict[str, Any]]]) -> dict[tuple[str, str], Image]:
        """Consistent reads of keys in several tables; found items by (table, key identity). Raises on failure."""
        flat = [(table, key) for table, table_keys in keys.items() for key in table_keys]
        chunks = [flat[i : i + BATCH_GET_MAX] for i in range(0, len(flat), BATCH_GET_MAX)]
        found: dict[tuple[str, str], Image] = {}
        if not chunks:
            return found
        for part in self._map(self._read_chunk, chunks):
            found.update(part)
        return found

    def _read_chunk(self, chunk: list[tuple[str, dict[str, Any]]]) -> dict[tuple[str, str], Image]:
        request: dict[str, Any] = {}
        names: dict[str, list[str]] = {}
        for table, key in chunk:
            request.setdefault(table, {"Keys": [], "ConsistentRead": True})["Keys"].append(key)
            names.setdefault(table, list(key))
        found: dict[tuple[str, str], Image] = {}
        for attempt in range(self.rounds):
            self._count()
            response = self.client.batch_get_item(RequestItems=request)
            for table, items in response.get("Responses", {}).items():
                for item in items:
                    found[(table, item_key(item, names[table]))] = item
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return found
            self.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
        raise RetryableError("UnprocessedKeys", "reads still unprocessed after every round")

    # -- batched writes -------------------------------------------------------------------------------
    def write(self, writes: list[Write]) -> dict[Hashable, PermanentError | RetryableError]:
        """Write every item; what still fails, by owner (nothing for the owners whose writes all landed)."""
        chunks = [writes[i : i + BATCH_WRITE_MAX] for i in range(0, len(writes), BATCH_WRITE_MAX)]
        failed: dict[Hashable, PermanentError | RetryableError] = {}
        if not chunks:
            return failed
        for part in self._map(self._write_chunk, chunks):
            failed.update(part)
        return failed

    def _write_chunk(self, chunk: list[Write]) -> dict[Hashable, PermanentError | RetryableError]:
        pending = chunk
        for attempt in range(self.rounds):
            request: dict[str, list[dict[str, Any]]] = {}
            for write in pending:
                request.setdefault(write.table, []).append(write.request)
            try:
                self._count()
                left = self.client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            except Exception as exc:  # noqa: BLE001 - classified
                error = classify(exc)
                if isinstance(error, PermanentError) and len(pending) > 1:
                    # One item DynamoDB refuses fails the whole call: halve it, so only that item is refused.
                    half = len(pending) // 2
                    return {**self._write_chunk(pending[:half]), **self._write_chunk(pending[half:])}
                if isinstance(error, PermanentError) or error.needs_operator:
                    return dict.fromkeys((w.owner for w in pending), error)
                if attempt + 1 == self.rounds:
                    return dict.fromkeys((w.owner for w in pending), error)
                self.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
                continue
            if not left:
                return {}
            unprocessed = {json.dumps(r, sort_keys=True, default=_hex) for reqs in left.values() for r in reqs}
            pending = [w for w in pending if json.dumps(w.request, sort_keys=True, default=_hex) in unprocessed]
            if not pending:
                return {}
            self.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
        error = RetryableError("UnprocessedItems", "writes still unprocessed after every round")
        return dict.fromkeys((w.owner for w in pending), error)

    # -- conditional single-item writes -------------------------------------------------------------------
    def conditional(self, operation: str, **kwargs: Any) -> Image | RetryableError | PermanentError | bool | None:
        """One conditional PutItem / DeleteItem: True when written, False when the condition failed, or the error.

        A DeleteItem asks for the deleted item (ALL_OLD) and returns it (an Image) when it deleted one.
        """
        for attempt in range(self.rounds):
            try:
                self._count()
                if operation == "PutItem":
                    self.client.put_item(**kwargs)
                    return True
                response = self.client.delete_item(ReturnValues="ALL_OLD", **kwargs)
                return dict(response.get("Attributes") or {}) or True
            except ClientError as exc:
                if error_code(exc) == "ConditionalCheckFailedException":
                    return False
                error = classify(exc)
            except Exception as exc:  # noqa: BLE001 - classified
                error = classify(exc)
            if isinstance(error, PermanentError) or error.needs_operator or attempt + 1 == self.rounds:
                return error
            self.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
        return RetryableError("ConditionalWrite", "unreachable")

    def run(self, jobs: list[Callable[[], Any]]) -> list[Any]:
        """Run independent jobs (conditional writes of distinct keys) concurrently, results in order."""
        return self._map(lambda job: job(), jobs)


def _hex(value: Any) -> str:
    return bytes(value).hex()


@dataclass
class LocalTable:
    """A region's own table as the bidirectional functions write it: the client is built once per cold start."""

    dynamodb: Any
    table: str
    side: SideTable
    stamps: Versions
    concurrency: int
    sleep: Callable[[float], None] = time.sleep  # between retry rounds (the local harness skips the waits)
    pool: ThreadPoolExecutor | None = None

    def __post_init__(self) -> None:
        if self.pool is None and self.concurrency > 1:
            self.pool = ThreadPoolExecutor(
                max_workers=self.concurrency, thread_name_prefix="ddbb-local", initializer=_mark_worker
            )

    @classmethod
    def of(cls, settings: LocalTableSettings) -> LocalTable:
        """The table, its side table and a client sized for the concurrency.

        Parameter validation is off: the data comes from DynamoDB and was checked when it arrived, and
        botocore's validation was ~3% of the functions' time.
        """
        config = client_config(pool=settings.write_concurrency + 4).merge(Config(parameter_validation=False))
        return cls(
            boto3.client("dynamodb", config=config),
            settings.table,
            SideTable(settings.tombstone_table, settings.tombstone_days * 86400),
            settings.stamps,
            settings.write_concurrency,
        )

    def store(self) -> Store:
        """A store for one invocation (it counts its requests)."""
        return Store(self.dynamodb, self.table, self.side, self.stamps, self.concurrency, self.sleep, pool=self.pool)
