"""A local Kinesis event source mapping, plus the hostile delivery the relay must survive.

`KinesisPoller` does what Lambda does between a Kinesis stream and a function: GetRecords on every
shard, the Lambda event shape (base64 `data`, `approximateArrivalTimestamp` in epoch seconds,
`eventID` = shard:sequence), partial batch responses by sequence number (Lambda checkpoints before
the lowest failed one and retries from there), bisection of a batch on a function error, bounded
retries, and an on-failure destination that gets Lambda's metadata (a pointer, not the records).

Faults go beyond what Lambda itself does, because the relay's PutRecords retries and producers'
duplicates make delivery worse than Lambda's shard order: `Faults` redelivers records late,
duplicates them, and shuffles batches. `FlakyPutRecords` makes PutRecords fail part of a call the way
Kinesis does (those records are not written, `FailedRecordCount` says how many). `revoke_keys` makes
a client's calls fail authentication while it signs with given access keys.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .chaos import Killed
from .faults import Fault, inject
from .streams import _iso, on_failure_message

Handler = Callable[[dict[str, Any]], Any]


def kinesis_lambda_record(raw: dict[str, Any], shard_id: str, stream_arn: str, region: str) -> dict[str, Any]:
    """One GetRecords record (boto3 shapes: bytes, datetime) in Lambda's Kinesis event shape."""
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
        "eventID": f"{shard_id}:{raw['SequenceNumber']}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/ddb-bridge-relay-applier",
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


@dataclass
class Faults:
    """Hostile delivery: late redelivery, duplicates, shuffled batches (all seeded)."""

    rng: random.Random = field(default_factory=random.Random)
    duplicate: float = 0.0  # chance a delivered record is delivered again later
    delay: float = 0.0  # chance a record is held back and delivered after later records
    reorder: bool = False  # shuffle each invocation's records


@dataclass
class KinesisStats:
    """What the event source did."""

    invocations: int = 0
    records_delivered: int = 0
    retries: int = 0
    function_errors: int = 0
    bisections: int = 0
    sent_to_on_failure: int = 0
    duplicates: int = 0
    delayed: int = 0


class KinesisPoller:
    """Polls one Kinesis stream (every shard) and feeds a handler like a Lambda event source mapping."""

    def __init__(
        self,
        kinesis_client: Any,
        stream_name: str,
        handler: Handler,
        *,
        region: str,
        batch_size: int = 100,
        max_retries: int = 3,
        bisect: bool = True,
        on_failure: Callable[[dict[str, Any]], None] | None = None,
        faults: Faults | None = None,
        function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ddb-bridge-relay-applier",
    ) -> None:
        self.function_arn = function_arn
        self.kinesis = kinesis_client
        self.stream_name = stream_name
        self.handler = handler
        self.region = region
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.bisect = bisect
        self.on_failure = on_failure
        self.faults = faults or Faults()
        self.stats = KinesisStats()
        summary = kinesis_client.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
        self.stream_arn = summary["StreamARN"]
        self._shards = [s["ShardId"] for s in kinesis_client.list_shards(StreamName=stream_name)["Shards"]]
        self._iterators: dict[str, str] = {}
        self._late: list[tuple[str, dict[str, Any]]] = []
        self._duplicated: set[str] = set()

    def _fetch(self, shard: str) -> list[dict[str, Any]]:
        if shard not in self._iterators:
            self._iterators[shard] = self.kinesis.get_shard_iterator(
                StreamName=self.stream_name, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        resp = self.kinesis.get_records(ShardIterator=self._iterators[shard], Limit=self.batch_size)
        self._iterators[shard] = resp.get("NextShardIterator") or self._iterators[shard]
        return [kinesis_lambda_record(r, shard, self.stream_arn, self.region) for r in resp.get("Records", [])]

    def poll_once(self) -> int:
        """Deliver at most one batch per shard (and anything held back); returns records taken."""
        taken = 0
        for shard in self._shards:
            batch = self._fetch(shard)
            taken += len(batch)
            now: list[dict[str, Any]] = []
            for record in batch:
                if self.faults.delay and self.faults.rng.random() < self.faults.delay:
                    self.stats.delayed += 1
                    self._late.append((shard, record))
                else:
                    now.append(record)
            late = self._take_late(shard) if not batch or self.faults.rng.random() < 0.5 else []
            taken += len(late)
            if now:
                self._deliver(shard, now)
            if late:
                self._deliver(shard, late)
        return taken

    def _take_late(self, shard: str) -> list[dict[str, Any]]:
        mine = [r for s, r in self._late if s == shard][: self.batch_size]
        taken = {id(r) for r in mine}
        self._late = [(s, r) for s, r in self._late if id(r) not in taken]
        return mine

    def drain(self, *, idle_polls: int = 2, timeout_s: float = 120.0) -> None:
        """Poll until the stream is empty `idle_polls` times in a row and nothing is held back."""
        deadline = time.monotonic() + timeout_s
        idle = 0
        while idle < idle_polls:
            if time.monotonic() > deadline:
                raise TimeoutError("Kinesis stream did not drain in time")
            idle = idle + 1 if self.poll_once() == 0 and not self._late else 0

    def _deliver(self, shard: str, batch: list[dict[str, Any]]) -> None:
        pending = list(batch)
        attempt = 0
        while pending:
            failures, crashed = self._invoke(pending)
            if not failures:
                self._maybe_duplicate(shard, pending)
                return
            attempt += 1
            if crashed and self.bisect and len(pending) > 1:
                # BisectBatchOnFunctionError: each half is retried on its own.
                self.stats.bisections += 1
                half = len(pending) // 2
                self._deliver(shard, pending[:half])
                self._deliver(shard, pending[half:])
                return
            seqs = [r["kinesis"]["sequenceNumber"] for r in pending]
            positions = {s: i for i, s in enumerate(seqs)}
            # Lambda checkpoints before the lowest failed sequence number; an unknown id fails the batch.
            lowest = min((positions.get(f, 0) for f in failures), default=0)
            if attempt > self.max_retries:
                self._send_to_on_failure(shard, pending[lowest:], crashed)
                return
            self.stats.retries += 1
            pending = pending[lowest:]

    def _invoke(self, records: list[dict[str, Any]]) -> tuple[list[str], bool]:
        event_records = list(records)
        if self.faults.reorder:
            self.faults.rng.shuffle(event_records)
        self.stats.invocations += 1
        self.stats.records_delivered += len(event_records)
        try:
            response = self.handler({"Records": event_records})
        except (Exception, Killed):  # noqa: BLE001 - a function error: Lambda retries (or bisects) the whole batch
            self.stats.function_errors += 1
            return [records[0]["kinesis"]["sequenceNumber"]], True
        return [f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])], False

    def _maybe_duplicate(self, shard: str, records: Iterable[dict[str, Any]]) -> None:
        if not self.faults.duplicate:
            return
        for record in records:
            if record["eventID"] not in self._duplicated and self.faults.rng.random() < self.faults.duplicate:
                self._duplicated.add(record["eventID"])  # once: a duplicate is not duplicated again
                self.stats.duplicates += 1
                self._late.append((shard, record))

    def _send_to_on_failure(self, shard: str, records: list[dict[str, Any]], crashed: bool = False) -> None:
        self.stats.sent_to_on_failure += len(records)
        if self.on_failure is None:
            raise RuntimeError(f"{len(records)} Kinesis records exhausted their retries and no on-failure destination")
        arrivals = [r["kinesis"]["approximateArrivalTimestamp"] for r in (records[0], records[-1])]
        self.on_failure(
            on_failure_message(
                "KinesisBatchInfo",
                function_arn=self.function_arn,
                invocations=self.max_retries + 1,
                crashed=crashed,
                shard=shard,
                stream_arn=self.stream_arn,
                first=records[0]["kinesis"]["sequenceNumber"],
                last=records[-1]["kinesis"]["sequenceNumber"],
                arrivals=(_iso(arrivals[0], millis=True), _iso(arrivals[1], millis=True)),
                size=len(records),
            )
        )


class FlakyPutRecords:
    """Wraps a Kinesis client: PutRecords fails a random part of each call, as a busy shard does.

    Failed records are not written; the response lists them in place with `ErrorCode`, and
    `FailedRecordCount` counts them. Everything else goes to the real client.
    """

    def __init__(self, client: Any, *, rng: random.Random, fail_rate: float) -> None:
        self._client = client
        self.rng = rng
        self.fail_rate = fail_rate
        self.calls = 0
        self.injected = 0
        self.log: list[tuple[int, int]] = []  # (records in the call, records refused), per call
        self._lock = threading.Lock()

    def put_records(self, **kwargs: Any) -> dict[str, Any]:
        """PutRecords with part of the records refused."""
        records = kwargs["Records"]
        with self._lock:
            self.calls += 1
            refused = [self.rng.random() < self.fail_rate for _ in records]
            self.injected += sum(refused)
            self.log.append((len(records), sum(refused)))
        kept = [r for r, no in zip(records, refused, strict=True) if not no]
        real = self._client.put_records(**{**kwargs, "Records": kept})["Records"] if kept else []
        results = iter(real)
        out = [
            {
                "ErrorCode": "ProvisionedThroughputExceededException",
                "ErrorMessage": "Rate exceeded for shard (injected)",
            }
            if no
            else next(results)
            for no in refused
        ]
        return {"FailedRecordCount": sum(refused), "Records": out}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def revoke_keys(client: Any, access_key_ids: set[str], code: str = "UnrecognizedClientException") -> Fault:
    """Make `client`'s PutRecords fail authentication while it signs with one of these keys.

    As Kinesis does for a deleted key or an expired token (`code`); the set is read at each call.
    """

    def signed_with_revoked(request: Any) -> bool:
        authorization = request.headers.get("Authorization", b"")
        text = authorization.decode() if isinstance(authorization, bytes) else str(authorization)
        return any(f"Credential={key}/" in text for key in access_key_ids)

    return inject(client, "PutRecords", Fault(code, times=10**9, when=signed_with_revoked))
