"""Fault injection at botocore's send step: the error travels botocore's real parse and retry path."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        """The body, as urllib3 would stream it."""
        yield self._body


@dataclass
class Fault:
    """Fails matching calls with an AWS error `times` times (or while `when` says so); counts them."""

    code: str
    times: int = 1
    status: int = 400
    when: Callable[[Any], bool] = field(default=lambda request: True)
    message: str | None = None  # the error's text (AWS quotes offending values in some)
    injected: int = 0
    seen: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        """Act as botocore's before-send hook: a response short-circuits the real request."""
        with self._lock:
            self.seen += 1
            if self.injected >= self.times or not self.when(request):
                return None
            self.injected += 1
        body = json.dumps(
            {
                "__type": f"com.amazonaws.dynamodb.v20120810#{self.code}",
                "message": self.message or f"injected {self.code}",
            }
        ).encode()
        return AWSResponse(
            request.url,
            self.status,
            {"x-amzn-RequestId": "injected", "Content-Type": "application/x-amz-json-1.0"},
            _Raw(body),
        )


def inject(client: Any, operation: str, fault: Fault) -> Fault:
    """Register `fault` on one client's operation (e.g. 'BatchWriteItem'); returns it for counting."""
    client.meta.events.register(f"before-send.{client.meta.service_model.endpoint_prefix}.{operation}", fault)
    return fault


@dataclass
class CancelTransactions:
    """Cancels every TransactWriteItems that holds an action matching `poisoned`, naming only that action.

    DynamoDB's answer when one action fails: TransactionCanceledException with one CancellationReason per
    action, `None` for the others. `code` is the poisoned action's reason (TransactionConflict: a retry
    might help; ValidationError: it never will). Counts the cancelled calls and how many actions each held.
    """

    poisoned: Callable[[dict[str, Any]], bool]
    code: str = "TransactionConflict"
    times: int = 10**9
    cancelled: list[int] = field(default_factory=list)

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        """The before-send hook."""
        actions = json.loads(request.body)["TransactItems"]
        active = len(self.cancelled) < self.times
        hits = [active and self.poisoned(action) for action in actions]
        if not any(hits):
            return None
        self.cancelled.append(len(actions))
        body = json.dumps(
            {
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "message": f"Transaction cancelled, please refer cancellation reasons [{self.code}]",
                "CancellationReasons": [
                    {"Code": self.code, "Message": "injected"} if hit else {"Code": "None"} for hit in hits
                ],
            }
        ).encode()
        return AWSResponse(
            request.url,
            400,
            {"x-amzn-RequestId": "injected", "Content-Type": "application/x-amz-json-1.0"},
            _Raw(body),
        )


def cancel_transactions(client: Any, fault: CancelTransactions) -> CancelTransactions:
    """Register `fault` on a DynamoDB client's TransactWriteItems; returns it for counting."""
    client.meta.events.register("before-send.dynamodb.TransactWriteItems", fault)
    return fault


class UnprocessedWrites:
    """Wraps a DynamoDB client: BatchWriteItem leaves the items `poisoned` matches unprocessed, `times` times.

    What DynamoDB does when one item's partition is hot: the other items of the call are written, the
    response lists the rest under UnprocessedItems. Everything else goes to the real client.
    """

    def __init__(self, client: Any, poisoned: Callable[[dict[str, Any]], bool], *, times: int = 10**9) -> None:
        self._client = client
        self.poisoned = poisoned
        self.times = times
        self.left_unprocessed = 0
        self._lock = threading.Lock()

    def batch_write_item(self, **kwargs: Any) -> dict[str, Any]:
        """BatchWriteItem with the poisoned items held back."""
        kept: dict[str, list[dict[str, Any]]] = {}
        held: dict[str, list[dict[str, Any]]] = {}
        for table, requests in kwargs["RequestItems"].items():
            for request in requests:
                with self._lock:
                    hold = self.left_unprocessed < self.times and self.poisoned(request)
                    self.left_unprocessed += hold
                (held if hold else kept).setdefault(table, []).append(request)
        response = self._client.batch_write_item(**{**kwargs, "RequestItems": kept}) if kept else {}
        unprocessed = dict(response.get("UnprocessedItems") or {})
        for table, requests in held.items():
            unprocessed[table] = [*unprocessed.get(table, []), *requests]
        return {**response, "UnprocessedItems": unprocessed}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def holding(marker: str) -> Callable[[dict[str, Any]], bool]:
    """A matcher of transaction actions whose JSON mentions `marker` (a key value, say)."""
    return lambda action: marker in json.dumps(action)


class S3Fault(Fault):
    """An S3 error (XML body, as S3 sends it; HEAD responses have none, so botocore reports the status)."""

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        """Act as botocore's before-send hook for an S3 operation."""
        with self._lock:
            self.seen += 1
            if self.injected >= self.times or not self.when(request):
                return None
            self.injected += 1
        body = (
            b""
            if request.method == "HEAD"
            else (f"<Error><Code>{self.code}</Code><Message>injected {self.code}</Message></Error>".encode())
        )
        return AWSResponse(request.url, self.status, {"x-amz-request-id": "injected"}, _Raw(body))
