"""Replay of parked table_replicator records: re-read each parked key from the source and apply it again.

A parked record is old by the time its cause is fixed, and replaying it verbatim could overwrite a
newer value (ordered mode writes unconditionally). So the replay re-reads the key's *current* item
from the source (consistent read) and sends it through the replicator as a fresh stream record:
MODIFY with the current image, or REMOVE when the item is gone. Run it while writes are frozen (the
cut-over drain) in `ordered` mode; any time in `lww` mode, where versions make it race-free.

    python -m ddb_bridge.resync --queue-url URL --source-table orders --function-name REPLICATOR [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3

from .codec import decode_image, encode_image
from .parking import record_of

Apply = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class ResyncReport:
    """What a resync did."""

    resynced: int = 0
    deleted: int = 0
    failed: int = 0
    unkeyed: int = 0
    keys: list[str] = field(default_factory=list)


def parked_messages(sqs: Any, queue_url: str, *, visibility_s: int = 300) -> Iterator[dict[str, Any]]:
    """Every message of the parking queue, once (each stays invisible while it is handled)."""
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=visibility_s).get(
            "Messages", []
        )
        if not messages:
            return
        yield from messages


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
    *, sqs: Any, queue_url: str, source: Any, source_table: str, apply: Apply, dry_run: bool = False
) -> ResyncReport:
    """Resync every parked key; a message is deleted only once its key was applied without failure."""
    report = ResyncReport()
    for message in parked_messages(sqs, queue_url):
        record = fresh_record(record_of(message["Body"]), source, source_table)
        if record is None:
            report.unkeyed += 1  # stays parked: nothing to re-read; inspect it by hand
            continue
        report.keys.append(json.dumps(record["dynamodb"]["Keys"], sort_keys=True))
        if dry_run:
            continue
        response = apply({"Records": [record]})
        if response.get("batchItemFailures"):
            report.failed += 1
            continue
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        if record["eventName"] == "REMOVE":
            report.deleted += 1
        else:
            report.resynced += 1
    return report


def lambda_apply(function_name: str, lambda_client: Any) -> Apply:
    """Apply through the deployed replicator (same code, same role): a synchronous Lambda invoke."""

    def apply(event: dict[str, Any]) -> dict[str, Any]:
        response = lambda_client.invoke(FunctionName=function_name, Payload=json.dumps(event).encode())
        payload = json.loads(response["Payload"].read() or b"{}")
        if response.get("FunctionError"):
            return {"batchItemFailures": [{"itemIdentifier": "function-error"}], "error": payload}
        return dict(payload)

    return apply


def main(argv: list[str] | None = None) -> int:
    """Command line: resync the parked keys of one replicator."""
    parser = argparse.ArgumentParser(prog="python -m ddb_bridge.resync", description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue-url", required=True, help="the stack's ParkingQueueUrl output")
    parser.add_argument("--source-table", required=True)
    parser.add_argument("--function-name", required=True, help="the stack's TableReplicatorFunctionName output")
    parser.add_argument("--region", default=None)
    parser.add_argument("--dry-run", action="store_true", help="list the keys, change nothing")
    args = parser.parse_args(argv)
    session = boto3.Session(region_name=args.region)
    report = resync(
        sqs=session.client("sqs"),
        queue_url=args.queue_url,
        source=session.client("dynamodb"),
        source_table=args.source_table,
        apply=lambda_apply(args.function_name, session.client("lambda")),
        dry_run=args.dry_run,
    )
    print(json.dumps(vars(report), indent=2))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
