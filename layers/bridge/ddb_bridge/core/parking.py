"""The parking lot: records that can never apply, kept whole in SQS with the reason, for replay."""

from __future__ import annotations

import base64
import json
import threading
import time
import zlib
from typing import Any

import boto3

from .clients import client_config
from .errors import RetryableError, describe

# SQS takes 1 MiB per message; records near the 400 KB item limit (old + new image) are compressed.
_COMPRESS_ABOVE = 200 * 1024


def parked_message(record: dict[str, Any], *, reason: str, error: str, source: str) -> str:
    """The SQS body of a parked record: the record itself (compressed when large) and why."""
    body: dict[str, Any] = {
        "reason": reason,
        "error": error[:2000],
        "source": source,
        "parkedAt": int(time.time() * 1000),
    }
    raw = json.dumps(record, separators=(",", ":"))
    if len(raw) > _COMPRESS_ABOVE:
        body["recordZlibBase64"] = base64.b64encode(zlib.compress(raw.encode("utf-8"), 6)).decode("ascii")
    else:
        body["record"] = record
    return json.dumps(body, separators=(",", ":"))


def record_of(message_body: str) -> dict[str, Any]:
    """The original record back out of a parked message."""
    body = json.loads(message_body)
    if "record" in body:
        return dict(body["record"])
    return dict(json.loads(zlib.decompress(base64.b64decode(body["recordZlibBase64"]))))


class ParkingLot:
    """Sends parked records to the parking queue; a failure to park is retryable (the record stays).

    The SQS client is made on the first park (parks are rare: no client at cold start), unless given.
    """

    def __init__(self, queue_url: str, source: str, *, region: str | None = None, sqs_client: Any = None) -> None:
        self.queue_url = queue_url
        self.source = source
        self.region = region
        self._sqs = sqs_client
        self._lock = threading.Lock()

    @property
    def sqs(self) -> Any:
        """The SQS client, created once on first use (thread-safe)."""
        with self._lock:
            if self._sqs is None:
                self._sqs = boto3.client("sqs", region_name=self.region, config=client_config(max_attempts=5))
            return self._sqs

    def park(self, record: dict[str, Any], *, reason: str, error: str) -> None:
        """Park one record whole; raises RetryableError when SQS cannot take it."""
        try:
            self.sqs.send_message(
                QueueUrl=self.queue_url,
                MessageBody=parked_message(record, reason=reason, error=error, source=self.source),
                MessageAttributes={"reason": {"DataType": "String", "StringValue": reason}},
            )
        except Exception as exc:
            raise RetryableError("ParkingFailed", f"could not park record ({reason}): {describe(exc)}") from exc
