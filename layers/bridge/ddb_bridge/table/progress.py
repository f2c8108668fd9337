"""Which stream records table_replicator has finished with: one small write per invocation, read by drain and status.

Lambda keeps an event source's checkpoint to itself, so the replicator records its own progress in the
stack's progress table (templates/progress.yaml). With ParallelizationFactor above 1 a batch holds only
some of a shard's keys (one of several concurrent lanes per shard, unknown to the function) and a Lambda
DynamoDB record does not name its shard, so "the last sequence number applied" would not mean "everything
before it applied". Each invocation therefore records exactly which records it finished with; `ddb-bridge
drain` reads the stream and ticks every record off against these sets (docs/runbook.md, "How drain works").

One item per invocation:

    pk   "stream#<stream ARN>"
    sk   "<highest handled sequence number>#<lowest>", each zero-padded to 40 digits (sorts by number)
    seqs every handled sequence number: sorted, delta-encoded as varints, zlib (0.03-4.3 KB for 1,000 records)
    records, newestCreatedMs, writtenAtMs, expiresAt (TTL: longer than the stream's 24 h retention)

Finished with (handled) = nothing more will be done for it: applied, stale, superseded by a later change of
its key in the batch, parked, or a TTL delete skipped by setting. Records reported as batch item failures
are not handled: Lambda delivers them again. A failed progress write never fails the batch (replication
comes first); it is logged and counted (`ProgressWriteFailures`), and drain then waits, never passes early.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ..core.clients import client_config
from ..core.errors import describe
from ..core.observability import MetricUnit, logger, metrics
from .settings import load_replicator_settings

SEQ_DIGITS = 40  # DynamoDB stream sequence numbers have 21 to 40 digits
TTL_SECONDS = 26 * 3600  # longer than the stream's 24 h retention: a record still in the stream keeps its proof
STREAM_PREFIX = "stream#"
PROGRESS_WRITE_FAILURES = "ProgressWriteFailures"


def encode_seqs(seqs: Iterable[int]) -> bytes:
    """Sequence numbers as sorted, delta-encoded varints, compressed."""
    out = bytearray()
    previous = 0
    for seq in sorted(set(seqs)):
        delta = seq - previous
        previous = seq
        while True:
            byte = delta & 0x7F
            delta >>= 7
            out.append(byte | (0x80 if delta else 0))
            if not delta:
                break
    return zlib.compress(bytes(out), 6)


def decode_seqs(blob: bytes) -> list[int]:
    """The sorted sequence numbers back out of `encode_seqs`."""
    raw = zlib.decompress(blob)
    seqs: list[int] = []
    value = shift = previous = 0
    for byte in raw:
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            previous += value
            seqs.append(previous)
            value = shift = 0
    return seqs


def stream_key(stream_arn: str) -> str:
    """The partition key of a stream's progress items."""
    return f"{STREAM_PREFIX}{stream_arn}"


def sort_key(highest: int, lowest: int) -> str:
    """The sort key of one invocation's item: by its highest handled sequence number."""
    return f"{highest:0{SEQ_DIGITS}d}#{lowest:0{SEQ_DIGITS}d}"


@dataclass(frozen=True)
class BatchProgress:
    """What one invocation finished with."""

    stream_arn: str
    seqs: list[int]
    newest_created_ms: int

    def item(self, now_ms: int) -> dict[str, Any]:
        """The progress item (low-level DynamoDB form)."""
        return {
            "pk": {"S": stream_key(self.stream_arn)},
            "sk": {"S": sort_key(max(self.seqs), min(self.seqs))},
            "seqs": {"B": encode_seqs(self.seqs)},
            "records": {"N": str(len(self.seqs))},
            "newestCreatedMs": {"N": str(self.newest_created_ms)},
            "writtenAtMs": {"N": str(now_ms)},
            "expiresAt": {"N": str(now_ms // 1000 + TTL_SECONDS)},
        }


def batch_progress(records: Sequence[dict[str, Any]], failed: set[int]) -> BatchProgress | None:
    """The handled records of a batch (every record whose id is not in `failed`); None when there are none.

    Records without a stream ARN or a numeric sequence number (hand-made events) are not recorded.
    """
    seqs: list[int] = []
    newest = 0
    stream_arn = ""
    for record in records:
        if id(record) in failed:
            continue
        body = record.get("dynamodb") or {}
        seq, arn = str(body.get("SequenceNumber", "")), record.get("eventSourceARN")
        if not (seq.isdigit() and len(seq) <= SEQ_DIGITS and isinstance(arn, str) and arn):
            continue
        stream_arn = stream_arn or arn
        if arn != stream_arn:  # one event source mapping, one stream: never seen; keep the first
            continue
        seqs.append(int(seq))
        created = body.get("ApproximateCreationDateTime")
        if isinstance(created, int | float):
            newest = max(newest, int(created * 1000))
    return BatchProgress(stream_arn, seqs, newest) if seqs else None


class ProgressLog:
    """Writes the progress items of one function; the client is made on first use, on the cold start's session."""

    def __init__(self, table: str, session: boto3.Session, region: str | None) -> None:
        self.table = table
        self.region = region
        self._session = session
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The DynamoDB client (few retries: a lost progress write only makes drain wait)."""
        with self._lock:
            if self._client is None:
                self._client = self._session.client(
                    "dynamodb", region_name=self.region, config=client_config(max_attempts=3, read_timeout=5.0)
                )
            return self._client

    def record(self, records: Sequence[dict[str, Any]], failed: set[int]) -> bool:
        """Record the batch's handled records; False when there was nothing to record or the write failed."""
        progress = batch_progress(records, failed)
        if progress is None:
            return False
        try:
            self.client.put_item(TableName=self.table, Item=progress.item(int(time.time() * 1000)))
        except (ClientError, BotoCoreError) as exc:
            metrics.add_metric(name=PROGRESS_WRITE_FAILURES, unit=MetricUnit.Count, value=1)
            logger.warning("progress not recorded (drain will wait for these records)", extra={"error": describe(exc)})
            return False
        return True


@cache
def progress_log() -> ProgressLog | None:
    """The function's progress log (None without PROGRESS_TABLE_NAME), built at cold start.

    The session's credentials are resolved here, at cold start: they are the function's own (its role's),
    which Lambda hands to the sandbox once.
    """
    settings = load_replicator_settings()
    if not settings.progress_table:
        return None
    session = boto3.Session(region_name=settings.aws_region)
    session.get_credentials()
    return ProgressLog(settings.progress_table, session, settings.aws_region)


def record_progress(records: Sequence[dict[str, Any]], failed: set[int]) -> None:
    """Record which records of this batch are finished with (no-op without a progress table)."""
    log = progress_log()
    if log is not None:
        log.record(records, failed)


@dataclass(frozen=True)
class ProgressItem:
    """One invocation's progress, as read back."""

    highest: int
    lowest: int
    seqs: list[int]
    newest_created_ms: int
    written_at_ms: int


def read_progress(dynamodb: Any, table: str, stream_arn: str, *, from_seq: int = 0) -> Iterator[ProgressItem]:
    """Every progress item of a stream whose highest handled sequence number is at least `from_seq`."""
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk AND sk >= :from",
        "ExpressionAttributeValues": {
            ":pk": {"S": stream_key(stream_arn)},
            ":from": {"S": f"{from_seq:0{SEQ_DIGITS}d}"},
        },
        "ConsistentRead": True,
    }
    while True:
        page = dynamodb.query(**kwargs)
        for item in page.get("Items", []):
            yield _parsed(item)
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def latest_progress(dynamodb: Any, table: str, stream_arn: str, *, limit: int = 25) -> list[ProgressItem]:
    """The progress items of the highest sequence numbers, newest first (for status)."""
    page = dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": stream_key(stream_arn)}},
        ScanIndexForward=False,
        Limit=limit,
    )
    return [_parsed(item) for item in page.get("Items", [])]


def _parsed(item: dict[str, Any]) -> ProgressItem:
    highest, lowest = (int(part) for part in item["sk"]["S"].split("#", 1))
    return ProgressItem(
        highest=highest,
        lowest=lowest,
        seqs=decode_seqs(bytes(item["seqs"]["B"])),
        newest_created_ms=int(item.get("newestCreatedMs", {}).get("N", "0")),
        written_at_ms=int(item.get("writtenAtMs", {}).get("N", "0")),
    )
