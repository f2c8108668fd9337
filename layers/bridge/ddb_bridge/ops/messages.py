"""Messages an operator command works through: taken from an SQS queue first, then deleted or given back.

replay, resync and recover take their messages before working on any (hidden for the visibility
timeout), so a message the work sends to the same queue is not taken again by the same run. A message
is deleted once its work is done; the ones kept, and the ones never reached when the run stops early,
become visible again at once when the run ends, however it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

Message = dict[str, Any]


class Taken:
    """The messages one run took, and which of them go back to the queue."""

    def __init__(self, sqs: Any, queue_url: str, messages: list[Message]) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.messages = messages
        self.reached = 0
        self._kept: list[str] = []

    def __iter__(self) -> Iterator[Message]:
        """Each message in turn."""
        for message in self.messages:
            self.reached += 1
            yield message

    def keep(self, message: Message) -> None:
        """Leave the message in the queue (visible again when the run ends)."""
        self._kept.append(message["ReceiptHandle"])

    def delete(self, message: Message) -> None:
        """Remove the message: its work is done."""
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def give_back(self) -> None:
        """Make the kept messages, and those never reached, visible again now."""
        for handle in self._kept + [m["ReceiptHandle"] for m in self.messages[self.reached :]]:
            self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=handle, VisibilityTimeout=0)


@contextmanager
def taken(sqs: Any, queue_url: str, *, max_messages: int, visibility_timeout: int) -> Iterator[Taken]:
    """Up to `max_messages` messages, hidden while the block works through them, given back when it ends."""
    messages: list[Message] = []
    while len(messages) < max_messages:
        got = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, max_messages - len(messages)),
            VisibilityTimeout=visibility_timeout,
        ).get("Messages", [])
        if not got:
            break
        messages.extend(got)
    batch = Taken(sqs, queue_url, messages)
    try:
        yield batch
    finally:
        batch.give_back()
