"""Lambda's SQS event source, played faithfully: poll, batch, invoke, partial batch responses, redrive to the DLQ.

As Lambda does: up to `batch_size` messages per invocation (several ReceiveMessage calls), the exact
Lambda SQS event shape, successful messages deleted, failed ones (listed in `batchItemFailures`, or the
whole batch when the handler raises) left alone so they become visible again after the queue's
visibility timeout; the queue's RedrivePolicy moves a message to its DLQ after maxReceiveCount receives
(moto enforces that on receive, as SQS does). `scramble` plays hostile delivery: duplicates, any order.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any

Handler = Callable[[dict[str, Any]], Any]


class SqsSource:
    """Delivers one queue to one handler the way Lambda's event source mapping does."""

    def __init__(
        self, sqs: Any, queue_url: str, handler: Handler, *, batch_size: int = 10, region: str = "us-east-1"
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.handler = handler
        self.batch_size = batch_size
        self.region = region
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
        self.queue_arn = attrs["QueueArn"]
        self.invocations = 0
        self.failures_reported = 0
        self.handler_errors = 0
        self._lock = threading.Lock()

    def _receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while len(messages) < self.batch_size:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(messages)),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not got:
                break
            messages.extend(got)
        return messages

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        attrs = message.get("Attributes", {})
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {
                "ApproximateReceiveCount": attrs.get("ApproximateReceiveCount", "1"),
                "SentTimestamp": attrs.get("SentTimestamp", str(int(time.time() * 1000))),
                "SenderId": attrs.get("SenderId", "AIDAIENQZJOLO23YVJ4VO"),
                "ApproximateFirstReceiveTimestamp": attrs.get(
                    "ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000))
                ),
            },
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        }

    def poll_once(self) -> int:
        """One invocation with whatever is visible now; returns the number of messages delivered."""
        messages = self._receive()
        if not messages:
            return 0
        event = {"Records": [self._record(m) for m in messages]}
        with self._lock:
            self.invocations += 1
        try:
            response = self.handler(event) or {}
        except Exception:  # noqa: BLE001 - Lambda: an unhandled error fails the whole batch
            with self._lock:
                self.handler_errors += 1
            return len(messages)
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        with self._lock:
            self.failures_reported += len(failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        for i in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done[i : i + 10])],
            )
        return len(messages)

    def pending(self) -> int:
        """Messages visible or in flight."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def drain(self, *, timeout_s: float = 60.0, concurrency: int = 1, idle_s: float = 0.05) -> None:
        """Deliver until the queue is empty (failed messages come back after their visibility timeout)."""
        deadline = time.monotonic() + timeout_s
        errors: list[BaseException] = []

        def worker() -> None:
            try:
                while time.monotonic() < deadline:
                    if self.poll_once() == 0:
                        if self.pending() == 0:
                            return
                        time.sleep(idle_s)
            except BaseException as exc:  # noqa: BLE001 - surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()) + 5)
        if errors:
            raise errors[0]
        if self.pending():
            raise TimeoutError(f"{self.pending()} messages still in {self.queue_url} after {timeout_s} s")


def scramble(sqs: Any, queue_url: str, rng: random.Random, *, duplicates: float = 0.5) -> list[str]:
    """Take every message out of the queue and send it back shuffled, a share of them twice; returns the bodies."""
    bodies = take_all(sqs, queue_url)
    delivery = bodies + [b for b in bodies if rng.random() < duplicates]
    rng.shuffle(delivery)
    for i in range(0, len(delivery), 10):
        sqs.send_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(n), "MessageBody": b} for n, b in enumerate(delivery[i : i + 10])]
        )
    return delivery


def take_all(sqs: Any, queue_url: str) -> list[str]:
    """Remove every visible message from the queue; returns their bodies (PurgeQueue allows one call a minute)."""
    bodies: list[str] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60).get("Messages", [])
        if not got:
            return bodies
        for m in got:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def bodies_of(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message body in a queue, parsed (each left invisible for 5 minutes)."""
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=300).get("Messages", [])
        if not got:
            return out
        out.extend(json.loads(m["Body"]) for m in got)
