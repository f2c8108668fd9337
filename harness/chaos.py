"""Faults inside the functions' own calls, seeded: refused side-table writes, killed invocations, lost responses.

`Chaos` hooks a function's botocore clients (its table and side table, its peer stream):

- **side-table write bursts**: a BatchWriteItem to the side table starts, by chance, a burst of calls whose
  items all come back unprocessed, long enough to fail every retry round of an invocation, so a tombstone,
  an echo marker or a version record stays unwritten and the function must not acknowledge what depended
  on it;
- **kills**: a request, by chance, ends the invocation as a dead process would, before the request is sent
  or after its response came back (`Killed` is not an `Exception`: nothing inside the function catches it;
  the event sources treat it as a function error and retry the batch);
- **lost responses**: a write request is carried out and its response then lost (a read timeout), so
  botocore sends it again: the write happens twice.
"""

from __future__ import annotations

import random
import threading
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

from .faults import _Raw

_WRITES = frozenset({"PutItem", "DeleteItem", "BatchWriteItem", "UpdateItem", "PutRecords"})
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Killed(BaseException):
    """The function's process died in the middle of an invocation."""


@dataclass
class Chaos:
    """Seeded faults for the clients it is attached to; the chances can change between schedules."""

    rng: random.Random = field(default_factory=random.Random)
    side_tables: set[str] = field(default_factory=set)
    side_bursts: float = 0.0  # chance a side-table BatchWriteItem starts a burst of refusals
    kill: float = 0.0  # chance a request kills the invocation (half before sending it, half after its response)
    lost: float = 0.0  # chance a write's response is lost after the write happened
    injected: Counter[str] = field(default_factory=Counter)
    _burst_left: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, client: Any) -> Any:
        """Hook a client's requests; returns it."""
        client.meta.events.register_first("before-send", self._before_send)
        client.meta.events.register("after-call", self._after_call)
        return client

    def _draw(self) -> float:
        with self._lock:
            return self.rng.random()

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else str(target)).rpartition(".")[2]
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
        if operation == "BatchWriteItem" and any(t.encode() in body for t in self.side_tables):
            with self._lock:
                if self._burst_left == 0 and self.side_bursts and self.rng.random() < self.side_bursts:
                    self._burst_left = self.rng.randint(8, 12)
                refuse = self._burst_left > 0
                self._burst_left -= refuse
            if refuse:
                self.injected["side-write refused"] += 1
                return _unprocessed(request.url, body)
        if self.kill and self._draw() < self.kill / 2:
            self.injected["killed before a request"] += 1
            raise Killed(operation)
        if operation in _WRITES and self.lost and self._draw() < self.lost:
            headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
            _LOOPBACK.open(urllib.request.Request(request.url, data=body, headers=headers, method="POST")).read()
            self.injected["response lost"] += 1
            raise ReadTimeoutError(endpoint_url=request.url)
        return None

    def _after_call(self, **_: Any) -> None:
        if self.kill and self._draw() < self.kill / 2:
            self.injected["killed after a response"] += 1
            raise Killed("after a response")


def _unprocessed(url: str, body: bytes) -> AWSResponse:
    """A BatchWriteItem response that wrote nothing: every item comes back unprocessed."""
    import json

    requested = json.loads(body)["RequestItems"]
    payload = json.dumps({"UnprocessedItems": requested}).encode()
    headers = {"x-amzn-RequestId": "injected", "Content-Type": "application/x-amz-json-1.0"}
    return AWSResponse(url, 200, headers, _Raw(payload))
