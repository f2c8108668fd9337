"""Replays parked records: each one goes back through the function that parked it, as a one-record batch.

    ddb-bridge replay --stack-name STACK [--function NAME] [--source relay_applier] [--max 100] [--dry-run]
    ddb-bridge replay --queue-url URL --function NAME [--region R] ...          (without a stack)

A parked message holds the whole record (docs/design.md#failures), so replaying needs nothing from the stream,
which may have expired. The function is invoked synchronously with `{"Records": [record]}`. A message
is deleted only when the invocation succeeded with no batch item failure: the record was applied, or
judged stale or duplicate, or parked again (still poison: the new message says why). Otherwise it
becomes visible again for a later replay. Both stream_relay and relay_applier are idempotent, so a
replay never does harm. `--source` picks the messages of one function out of a shared queue.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.parking import record_of
from .messages import taken

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
    with taken(sqs, queue_url, max_messages=max_messages, visibility_timeout=visibility_timeout) as messages:
        for message in messages:
            report.seen += 1
            body = json.loads(message["Body"])
            reason = str(body.get("reason", "unknown"))
            report.reasons[reason] = report.reasons.get(reason, 0) + 1
            if dry_run or (sources and body.get("source") not in sources):
                report.skipped += 1
                messages.keep(message)
                continue
            record: dict[str, Any] | None = record_of(message["Body"])
            if transform is not None and record is not None:
                record = transform(record)
            if record is None:
                report.skipped += 1
                messages.keep(message)
                continue
            if not applied(invoke({"Records": [record]})):
                report.failed += 1
                messages.keep(message)
                continue
            messages.delete(message)
            report.replayed += 1
    return report


def applied(response: dict[str, Any]) -> bool:
    """True when an invocation neither failed nor reported a batch item failure."""
    return not (response.get("FunctionError") or response.get("batchItemFailures"))


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
    """`python -m ddb_bridge.ops.replay ...` is `ddb-bridge replay ...`."""
    from .cli import main as cli_main

    return cli_main(["replay", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
