"""Replay of parked table_replicator (and backfill) records: re-read each parked key from the source, apply it again.

A parked record is old by the time its cause is fixed, and replaying it verbatim could overwrite a
newer value (ordered mode writes unconditionally). So the replay re-reads the key's *current* item
from the source (consistent read) and sends it through the replicator as a fresh stream record:
MODIFY with the current image, or REMOVE when the item is gone. Run it while writes are frozen (the
cut-over drain) in `ordered` mode; any time in `lww` mode, where versions make it race-free.
It is `ddb_bridge.ops.replay` with that one step added: the same bounded take, tally and visibility rules.

    python -m ddb_bridge.ops.resync --queue-url URL --source-table orders --function REPLICATOR [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import boto3

from ..core.clients import client_config
from ..core.codec import decode_image, encode_image
from .replay import Invoke, ReplayReport, lambda_invoker, replay


def fresh_record(parked: dict[str, Any], source: Any, source_table: str) -> dict[str, Any] | None:
    """A stream record carrying the key's current source state; None when the record has no usable key."""
    body = parked.get("dynamodb") or {}
    wire_keys = body.get("Keys")
    if not isinstance(wire_keys, dict) or not wire_keys:
        return None
    item = source.get_item(TableName=source_table, Key=decode_image(wire_keys), ConsistentRead=True).get("Item")
    fresh_body: dict[str, Any] = {
        "Keys": wire_keys,
        "SequenceNumber": str(body.get("SequenceNumber", "0")),
        "ApproximateCreationDateTime": time.time(),
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if item is not None:
        fresh_body["NewImage"] = encode_image(item)
    return {
        "eventID": f"resync-{parked.get('eventID', '')}",
        "eventName": "MODIFY" if item is not None else "REMOVE",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": parked.get("awsRegion", ""),
        "dynamodb": fresh_body,
        "eventSourceARN": parked.get("eventSourceARN", ""),
    }


def resync(
    *,
    sqs: Any,
    queue_url: str,
    source: Any,
    source_table: str,
    invoke: Invoke,
    dry_run: bool = False,
    max_messages: int = 1000,
) -> ReplayReport:
    """Resync every key parked by table_replicator or the backfill; a message is deleted once its key applied.

    A record with no usable key is skipped and stays parked for a human.
    """
    return replay(
        sqs,
        queue_url,
        invoke,
        source=("table_replicator", "backfill"),
        max_messages=max_messages,
        dry_run=dry_run,
        transform=lambda record: fresh_record(record, source, source_table),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: resync the parked keys of one replicator; exit status 1 when some key still failed."""
    parser = argparse.ArgumentParser(prog="python -m ddb_bridge.ops.resync", description=__doc__.split("\n")[0])
    parser.add_argument("--queue-url", required=True, help="the stack's ParkingQueueUrl output")
    parser.add_argument("--source-table", required=True)
    parser.add_argument("--function", required=True, help="the stack's TableReplicatorFunctionName output")
    parser.add_argument("--region", default=None)
    parser.add_argument("--max", type=int, default=1000, help="at most this many messages (default 1000)")
    parser.add_argument("--dry-run", action="store_true", help="count the parked messages by reason, change nothing")
    args = parser.parse_args(argv)
    session = boto3.Session(region_name=args.region)
    config = client_config(max_attempts=5, read_timeout=900.0)
    report = resync(
        sqs=session.client("sqs", config=config),
        queue_url=args.queue_url,
        source=session.client("dynamodb", config=config),
        source_table=args.source_table,
        invoke=lambda_invoker(session.client("lambda", config=config), args.function),
        dry_run=args.dry_run,
        max_messages=args.max,
    )
    print(json.dumps(vars(report), indent=2))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
