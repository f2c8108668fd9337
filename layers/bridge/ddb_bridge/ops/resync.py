"""Replay of parked table_replicator (and backfill) records: re-read each parked key from the source, apply it again.

A parked record is old by the time its cause is fixed, and replaying it verbatim could overwrite a
newer value (ordered mode writes unconditionally). So the replay re-reads the key's *current* item
from the source (consistent read) and sends it through the replicator as a fresh stream record:
MODIFY with the current image, or REMOVE when the item is gone. Run it while writes are frozen (the
cut-over drain) in `ordered` mode; any time in `lww` mode, where versions make it race-free.
It is `ddb_bridge.ops.replay` with that one step added: the same bounded take, tally and visibility rules.

    ddb-bridge resync --stack-name STACK [--dry-run]       (queue, source table and replicator from the stack)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from ..core.codec import decode_image, encode_image
from .replay import Invoke, ReplayReport, replay


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
    """`python -m ddb_bridge.ops.resync ...` is `ddb-bridge resync ...`."""
    from .cli import main as cli_main

    return cli_main(["resync", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
