"""Replays parked records: each one goes back through the function that parked it, as a one-record batch.

    python -m ddb_bridge.ops.replay --queue-url URL --function NAME [--source relay_applier] [--region R]
                                [--max 100] [--dry-run]

A parked message holds the whole record (docs/design.md#failures), so replaying needs nothing from the stream,
which may have expired. The function is invoked synchronously with `{"Records": [record]}`. A message
is deleted only when the invocation succeeded with no batch item failure: the record was applied, or
judged stale or duplicate, or parked again (still poison: the new message says why). Otherwise it
becomes visible again for a later replay. Both stream_relay and relay_applier are idempotent, so a
replay never does harm. `--source` picks the messages of one function out of a shared queue.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3

from ..core.clients import client_config
from ..core.parking import record_of

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class ReplayReport:
    """What a replay did."""

    seen: int = 0
    replayed: int = 0
    failed: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def replay(
    sqs: Any,
    queue_url: str,
    invoke: Invoke,
    *,
    source: str | Collection[str] | None = None,
    max_messages: int = 100,
    dry_run: bool = False,
    visibility_timeout: int = 900,
    transform: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> ReplayReport:
    """Replay up to `max_messages` parked records through `invoke`; returns the tally.

    The messages are taken first (hidden while the replay runs), then replayed, so a record the
    function parks again arrives as a new message that this replay leaves alone. Messages kept in the
    queue (skipped, or failed again) are made visible again at the end. `transform` turns a parked
    record into the record to send (None: leave it parked); `ddb_bridge.ops.resync` re-reads the key there.
    """
    report = ReplayReport()
    sources = {source} if isinstance(source, str) else set(source or ())
    taken: list[dict[str, Any]] = []
    while len(taken) < max_messages:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, max_messages - len(taken)),
            VisibilityTimeout=visibility_timeout,
        ).get("Messages", [])
        if not messages:
            break
        taken.extend(messages)
    keep: list[str] = []
    try:
        for message in taken:
            report.seen += 1
            body = json.loads(message["Body"])
            reason = str(body.get("reason", "unknown"))
            report.reasons[reason] = report.reasons.get(reason, 0) + 1
            if dry_run or (sources and body.get("source") not in sources):
                report.skipped += 1
                keep.append(message["ReceiptHandle"])
                continue
            record: dict[str, Any] | None = record_of(message["Body"])
            if transform is not None and record is not None:
                record = transform(record)
            if record is None:
                report.skipped += 1
                keep.append(message["ReceiptHandle"])
                continue
            response = invoke({"Records": [record]})
            if response.get("FunctionError") or response.get("batchItemFailures"):
                report.failed += 1
                keep.append(message["ReceiptHandle"])
                continue
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            report.replayed += 1
    finally:
        for handle in keep + [m["ReceiptHandle"] for m in taken[report.seen :]]:
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=handle, VisibilityTimeout=0)
    return report


def lambda_invoker(lambda_client: Any, function: str) -> Invoke:
    """Invoke a deployed function synchronously; a function error is reported, not raised."""

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        response = lambda_client.invoke(
            FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(event).encode()
        )
        payload = json.loads(response["Payload"].read() or b"{}")
        if response.get("FunctionError"):
            return {"FunctionError": response["FunctionError"], "detail": payload}
        return dict(payload or {})

    return invoke


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; exit status 1 when some record still failed."""
    parser = argparse.ArgumentParser(prog="python -m ddb_bridge.ops.replay", description=__doc__.split("\n")[0])
    parser.add_argument("--queue-url", required=True, help="the parking queue (stack output ParkingQueueUrl)")
    parser.add_argument("--function", required=True, help="the function to replay through (name or ARN)")
    parser.add_argument("--source", help="only messages parked by this function (stream_relay, relay_applier, ...)")
    parser.add_argument("--region", help="the region of the queue and the function")
    parser.add_argument("--max", type=int, default=100, help="at most this many messages (default 100)")
    parser.add_argument("--dry-run", action="store_true", help="count the parked messages by reason, change nothing")
    args = parser.parse_args(argv)
    session = boto3.Session(region_name=args.region)
    config = client_config(max_attempts=5, read_timeout=900.0)
    report = replay(
        session.client("sqs", config=config),
        args.queue_url,
        lambda_invoker(session.client("lambda", config=config), args.function),
        source=args.source,
        max_messages=args.max,
        dry_run=args.dry_run,
    )
    print(json.dumps(vars(report), indent=2))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
