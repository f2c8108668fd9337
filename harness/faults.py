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
            {"__type": f"com.amazonaws.dynamodb.v20120810#{self.code}", "message": f"injected {self.code}"}
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
