"""Recovers batches that exhausted their retries: re-reads each on-failure pointer's range and applies it again.

    ddb-bridge recover --stack-name STACK [--function NAME] [--max 10] [--dry-run]
    ddb-bridge recover --queue-url URL [--function NAME] [--source-table TABLE] [--region R] ...  (no stack)

When a stream batch fails every retry, Lambda's event source sends its on-failure destination a
pointer, not the records: `DDBStreamBatchInfo` (a DynamoDB stream) or `KinesisBatchInfo` (the relay
stream), each with the shard and the first and last sequence numbers. The records stay in the stream
only while it retains them (24 h for DynamoDB Streams, the relay stream's retention for Kinesis).
For each message this command re-reads that range (GetShardIterator AT_SEQUENCE_NUMBER, GetRecords),
builds the Lambda event the function would have received, and invokes the deployed function with it
(the message's own `functionArn` unless `--function` says otherwise), through the same idempotent path
as live replication: relay_applier and stream_relay decide by version, so replaying is safe. For
table_replicator in `ordered` mode, replaying old records could overwrite newer values: pass
`--source-table`, and each key of the range is re-read from the source (consistent read) and sent as its
current state, as `ddb_bridge.ops.resync` does. A message is deleted once its range applied with no
batch item failure. A range the stream no longer retains (trimmed, or the stream is gone) cannot be
read: it is reported as expired and the message stays in the queue, for a resync from the source
(or a full load) to repair.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ..core.codec import encode_image
from ..core.errors import describe, error_code
from .messages import taken
from .replay import Invoke, applied
from .resync import fresh_record

_EXPIRED_CODES = frozenset({"TrimmedDataAccessException", "ExpiredIteratorException", "ResourceNotFoundException"})
_MAX_EVENT_BYTES = 5 * 1024 * 1024  # synchronous invocations take 6 MB of payload
_MAX_EVENT_RECORDS = 1000


class RangeExpired(Exception):
    """The stream no longer holds the range a pointer names."""


class BadMessage(ValueError):
    """An on-failure message that is not a pointer Lambda writes."""


@dataclass(frozen=True)
class Pointer:
    """One on-failure message: a range of one shard of a DynamoDB or Kinesis stream."""

    kind: str  # "dynamodb" or "kinesis"
    stream_arn: str
    shard_id: str
    start: str
    end: str
    size: int
    function_arn: str | None

    @property
    def region(self) -> str:
        """The stream's region, from its ARN."""
        return self.stream_arn.split(":")[3]


def pointer_of(body: Any) -> Pointer:
    """Parse an on-failure message body as Lambda writes it; BadMessage names what is missing."""
    if not isinstance(body, dict):
        raise BadMessage("the message is not a JSON object")
    for kind, info_key in (("dynamodb", "DDBStreamBatchInfo"), ("kinesis", "KinesisBatchInfo")):
        info = body.get(info_key)
        if info is None:
            continue
        if not isinstance(info, dict):
            raise BadMessage(f"{info_key} is not an object")
        for name in ("shardId", "startSequenceNumber", "endSequenceNumber", "streamArn"):
            if not isinstance(info.get(name), str) or not info[name]:
                raise BadMessage(f"{info_key}.{name} is missing")
        if not str(info["startSequenceNumber"]).isdigit() or not str(info["endSequenceNumber"]).isdigit():
            raise BadMessage(f"{info_key}: sequence numbers must be digits")
        if len(info["streamArn"].split(":")) < 6:
            raise BadMessage(f"{info_key}.streamArn is not an ARN")
        function = (body.get("requestContext") or {}).get("functionArn")
        return Pointer(
            kind,
            info["streamArn"],
            info["shardId"],
            info["startSequenceNumber"],
            info["endSequenceNumber"],
            int(info.get("batchSize") or 0),
            function if isinstance(function, str) else None,
        )
    raise BadMessage("neither DDBStreamBatchInfo nor KinesisBatchInfo: not a stream on-failure message")


def _dynamodb_record(raw: dict[str, Any], pointer: Pointer) -> dict[str, Any]:
    """A GetRecords record (boto3: bytes, datetime) in the shape Lambda hands the function."""
    body = raw["dynamodb"]
    out: dict[str, Any] = {
        "ApproximateCreationDateTime": body["ApproximateCreationDateTime"].timestamp(),
        "Keys": encode_image(body["Keys"]),
        "SequenceNumber": body["SequenceNumber"],
        "SizeBytes": body.get("SizeBytes", 0),
        "StreamViewType": body.get("StreamViewType", "NEW_AND_OLD_IMAGES"),
    }
    for image in ("NewImage", "OldImage"):
        if image in body:
            out[image] = encode_image(body[image])
    record: dict[str, Any] = {
        "eventID": raw.get("eventID", ""),
        "eventName": raw["eventName"],
        "eventVersion": raw.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": pointer.region,
        "dynamodb": out,
        "eventSourceARN": pointer.stream_arn,
    }
    if raw.get("userIdentity"):
        record["userIdentity"] = raw["userIdentity"]
    return record


def _kinesis_record(raw: dict[str, Any], pointer: Pointer) -> dict[str, Any]:
    """A Kinesis GetRecords record in the shape Lambda hands the function."""
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": raw["PartitionKey"],
            "sequenceNumber": raw["SequenceNumber"],
            "data": base64.b64encode(raw["Data"]).decode("ascii"),
            "approximateArrivalTimestamp": raw["ApproximateArrivalTimestamp"].timestamp(),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{pointer.shard_id}:{raw['SequenceNumber']}",
        "eventName": "aws:kinesis:record",
        "awsRegion": pointer.region,
        "eventSourceARN": pointer.stream_arn,
    }


def read_range(client: Any, pointer: Pointer, *, max_calls: int = 1000) -> list[dict[str, Any]]:
    """Every record of the pointer's range, in the Lambda event shape; RangeExpired when it is gone.

    The first record read must be the range's first: if the stream starts later, part of the range was
    trimmed, and applying the rest alone would leave a gap.
    """
    first, last = int(pointer.start), int(pointer.end)
    try:
        if pointer.kind == "dynamodb":
            iterator = client.get_shard_iterator(
                StreamArn=pointer.stream_arn,
                ShardId=pointer.shard_id,
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                SequenceNumber=pointer.start,
            )["ShardIterator"]
        else:
            iterator = client.get_shard_iterator(
                StreamName=pointer.stream_arn.split(":stream/", 1)[-1],
                ShardId=pointer.shard_id,
                ShardIteratorType="AT_SEQUENCE_NUMBER",
                StartingSequenceNumber=pointer.start,
            )["ShardIterator"]
        records: list[dict[str, Any]] = []
        empty = 0
        for _ in range(max_calls):
            response = client.get_records(ShardIterator=iterator, Limit=1000)
            got = response.get("Records", [])
            for raw in got:
                seq = raw["dynamodb"]["SequenceNumber"] if pointer.kind == "dynamodb" else raw["SequenceNumber"]
                if not records and int(seq) != first:
                    raise RangeExpired(f"the stream starts after {pointer.start} in {pointer.shard_id}: trimmed")
                if int(seq) > last:
                    return records
                shape = _dynamodb_record if pointer.kind == "dynamodb" else _kinesis_record
                records.append(shape(raw, pointer))
                if int(seq) == last:
                    return records
            iterator = response.get("NextShardIterator")
            empty = 0 if got else empty + 1
            if not iterator or empty >= 20:
                break
    except ClientError as exc:
        if error_code(exc) in _EXPIRED_CODES or (
            pointer.kind == "kinesis" and error_code(exc) == "InvalidArgumentException"
        ):
            raise RangeExpired(describe(exc)) from exc
        raise
    if not records:
        raise RangeExpired(f"no record of {pointer.start}..{pointer.end} is left in {pointer.shard_id}")
    raise RangeExpired(f"the range ends before {pointer.end}: the shard holds only part of it")


def current_state(records: list[dict[str, Any]], source: Any, source_table: str) -> list[dict[str, Any]]:
    """One record per key of the range, carrying the key's current state in the source table."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        keys = (record.get("dynamodb") or {}).get("Keys")
        latest[json.dumps(keys, sort_keys=True)] = record
    fresh = [fresh_record(record, source, source_table) for record in latest.values()]
    return [record for record in fresh if record is not None]


def _events(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records cut into invocations Lambda could take (payload and count), in order."""
    events: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for record in records:
        record_size = len(json.dumps(record))
        if current and (size + record_size > _MAX_EVENT_BYTES or len(current) >= _MAX_EVENT_RECORDS):
            events.append({"Records": current})
            current, size = [], 0
        current.append(record)
        size += record_size
    if current:
        events.append({"Records": current})
    return events


@dataclass
class RecoverReport:
    """What a recovery did: messages seen, recovered (deleted), expired or failed (kept), and why."""

    seen: int = 0
    recovered: int = 0
    records: int = 0
    expired: int = 0
    failed: int = 0
    skipped: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)


Clients = Callable[[str, str], Any]  # (service, region) -> client


def recover(
    sqs: Any,
    queue_url: str,
    clients: Clients,
    invoker: Callable[[str], Invoke],
    *,
    function: str | None = None,
    source: Any = None,
    source_table: str | None = None,
    max_messages: int = 10,
    dry_run: bool = False,
    visibility_timeout: int = 900,
) -> RecoverReport:
    """Recover up to `max_messages` on-failure messages; returns the tally.

    `clients(service, region)` gives a `dynamodbstreams` or `kinesis` client; `invoker(function)` an
    invoke callable (`ddb_bridge.ops.replay.lambda_invoker`). With `source` and `source_table`, each key
    of a DynamoDB range is re-read from the source and sent as its current state.
    """
    report = RecoverReport()
    with taken(sqs, queue_url, max_messages=max_messages, visibility_timeout=visibility_timeout) as messages:
        for message in messages:
            report.seen += 1
            try:
                pointer = pointer_of(json.loads(message["Body"]))
            except (BadMessage, ValueError) as exc:
                report.skipped += 1
                report.problems.append({"message": message.get("MessageId", ""), "skipped": str(exc)[:300]})
                messages.keep(message)
                continue
            where = f"{pointer.stream_arn} {pointer.shard_id} {pointer.start}..{pointer.end}"
            target = function or pointer.function_arn
            if dry_run or not target:
                report.skipped += 1
                if not target:
                    report.problems.append({"range": where, "skipped": "no function: pass --function"})
                messages.keep(message)
                continue
            service = "dynamodbstreams" if pointer.kind == "dynamodb" else "kinesis"
            try:
                records = read_range(clients(service, pointer.region), pointer)
            except RangeExpired as exc:
                report.expired += 1
                report.problems.append({"range": where, "expired": f"{exc}; repair these keys from the source"})
                messages.keep(message)
                continue
            if pointer.kind == "dynamodb" and source is not None and source_table:
                records = current_state(records, source, source_table)
            invoke = invoker(target)
            # all() stops at the first failure: the later part waits, order matters to the replicator
            if not all(applied(invoke(event)) for event in _events(records)):
                report.failed += 1
                report.problems.append({"range": where, "failed": "the function still fails; kept for later"})
                messages.keep(message)
                continue
            messages.delete(message)
            report.recovered += 1
            report.records += len(records)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ddb_bridge.ops.recover ...` is `ddb-bridge recover ...`."""
    from .cli import main as cli_main

    return cli_main(["recover", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
