"""A local DynamoDB Streams event source mapping: what Lambda does between a stream and a function.

moto cannot run Lambda (no Docker) and must never get an event source mapping (it drains the shard),
so this poller reads the stream with GetRecords, builds the exact Lambda event shape (base64 binary,
epoch seconds, eventSourceARN), invokes the handler, honours partial batch responses by resuming
from the lowest failed sequence number, retries a bounded number of times, and sends exhausted
batches to an on-failure queue with Lambda's metadata.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ddb_bridge.core.codec import encode_image

from .chaos import Killed

Handler = Callable[[dict[str, Any]], Any]


def lambda_record(
    raw: dict[str, Any], stream_arn: str, region: str = "us-east-1", *, whole_seconds: bool = False
) -> dict[str, Any]:
    """One GetRecords record (boto3 shapes: bytes, datetime) in Lambda's JSON event shape.

    DynamoDB Streams round ApproximateCreationDateTime down to the second; moto keeps a fraction, which
    `whole_seconds` drops (the bridge-owned stamps are ordered by it: tests must not see an order AWS never gives).
    """
    body = raw["dynamodb"]
    # moto 5.2.5 double-encodes binary values in a stream record's Keys (its images are right), so the
    # keys are taken from the image: a real stream (and Lambda) gives the same values in both.
    image = body.get("NewImage") or body.get("OldImage")
    keys = {name: image[name] for name in body["Keys"]} if image else body["Keys"]
    out_body: dict[str, Any] = {
        "ApproximateCreationDateTime": _created(body["ApproximateCreationDateTime"].timestamp(), whole_seconds),
        "Keys": encode_image(keys),
        "SequenceNumber": body["SequenceNumber"],
        "SizeBytes": body.get("SizeBytes", 0),
        "StreamViewType": body.get("StreamViewType", "NEW_AND_OLD_IMAGES"),
    }
    for image in ("NewImage", "OldImage"):
        if image in body:
            out_body[image] = encode_image(body[image])
    record: dict[str, Any] = {
        "eventID": raw.get("eventID", uuid.uuid4().hex),
        "eventName": raw["eventName"],
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": out_body,
        "eventSourceARN": stream_arn,
    }
    if raw.get("userIdentity"):
        record["userIdentity"] = raw["userIdentity"]
    return record


def _created(epoch_seconds: float, whole_seconds: bool) -> float:
    return float(int(epoch_seconds)) if whole_seconds else epoch_seconds


@dataclass
class PollerStats:
    """What the event source did."""

    invocations: int = 0
    records_delivered: int = 0
    retries: int = 0
    function_errors: int = 0
    sent_to_on_failure: int = 0
    batches: list[int] = field(default_factory=list)


class StreamPoller:
    """Polls one DynamoDB stream (every shard) and feeds a handler like a Lambda event source mapping."""

    def __init__(
        self,
        streams_client: Any,
        stream_arn: str,
        handler: Handler,
        *,
        batch_size: int = 100,
        max_retries: int = 3,
        on_failure: Callable[[dict[str, Any]], None] | None = None,
        region: str = "us-east-1",
        transform: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
        backoff: Callable[[int], None] | None = None,
        function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ddb-bridge-local",
    ) -> None:
        self.function_arn = function_arn
        self.streams = streams_client
        self.stream_arn = stream_arn
        self.handler = handler
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.on_failure = on_failure
        self.region = region
        self.transform = transform  # tests inject duplicates here
        self.backoff = backoff or (lambda attempt: None)
        self.stats = PollerStats()
        self.whole_seconds = False  # DynamoDB's second resolution (set for worlds with bridge-owned stamps)
        self._iterators: dict[str, str] = {}
        self._buffer: dict[str, list[dict[str, Any]]] = {}

    def _shards(self) -> list[str]:
        desc = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        return [s["ShardId"] for s in desc["Shards"]]

    def _fetch(self, shard: str) -> list[dict[str, Any]]:
        if shard not in self._iterators:
            self._iterators[shard] = self.streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        buffered = self._buffer.setdefault(shard, [])
        while len(buffered) < self.batch_size:
            resp = self.streams.get_records(ShardIterator=self._iterators[shard], Limit=self.batch_size)
            self._iterators[shard] = resp.get("NextShardIterator") or self._iterators[shard]
            got = [
                lambda_record(r, self.stream_arn, self.region, whole_seconds=self.whole_seconds)
                for r in resp.get("Records", [])
            ]
            buffered.extend(got)
            if not got:
                break
        batch, self._buffer[shard] = buffered[: self.batch_size], buffered[self.batch_size :]
        return batch

    def poll_once(self) -> int:
        """Deliver at most one batch per shard; returns how many records were taken off the stream."""
        taken = 0
        for shard in self._shards():
            batch = self._fetch(shard)
            if batch:
                taken += len(batch)
                self._deliver(shard, batch)
        return taken

    def drain(self, *, idle_polls: int = 2, timeout_s: float = 120.0) -> None:
        """Poll until the stream has been empty `idle_polls` times in a row."""
        deadline = time.monotonic() + timeout_s
        idle = 0
        while idle < idle_polls:
            if time.monotonic() > deadline:
                raise TimeoutError("stream did not drain in time")
            idle = idle + 1 if self.poll_once() == 0 else 0

    def _deliver(self, shard: str, batch: list[dict[str, Any]]) -> None:
        pending = batch
        attempt = 0
        crashed = False
        while pending:
            event_records = self.transform(list(pending)) if self.transform else pending
            self.stats.invocations += 1
            self.stats.records_delivered += len(event_records)
            self.stats.batches.append(len(event_records))
            try:
                response = self.handler({"Records": event_records})
                failures = [f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])]
                crashed = False
            except (Exception, Killed):  # noqa: BLE001 - a function error: Lambda retries the whole batch
                self.stats.function_errors += 1
                failures = [pending[0]["dynamodb"]["SequenceNumber"]]
                crashed = True
            if not failures:
                return
            positions = {r["dynamodb"]["SequenceNumber"]: i for i, r in enumerate(pending)}
            # Lambda checkpoints before the lowest failed sequence number; an unknown id fails the batch.
            lowest = min((positions.get(f, 0) for f in failures), default=0)
            attempt += 1
            if attempt > self.max_retries:
                self._send_to_on_failure(shard, pending[lowest:], crashed)
                return
            self.stats.retries += 1
            self.backoff(attempt)
            pending = pending[lowest:]

    def _send_to_on_failure(self, shard: str, records: list[dict[str, Any]], crashed: bool = False) -> None:
        self.stats.sent_to_on_failure += len(records)
        if self.on_failure is None:
            raise RuntimeError(f"{len(records)} records exhausted their retries and no on-failure destination")
        # Lambda sends metadata (a pointer into the stream), not the records themselves.
        arrivals = [r["dynamodb"]["ApproximateCreationDateTime"] for r in (records[0], records[-1])]
        self.on_failure(
            on_failure_message(
                "DDBStreamBatchInfo",
                function_arn=self.function_arn,
                invocations=self.max_retries + 1,
                crashed=crashed,
                shard=shard,
                stream_arn=self.stream_arn,
                first=records[0]["dynamodb"]["SequenceNumber"],
                last=records[-1]["dynamodb"]["SequenceNumber"],
                arrivals=(_iso(arrivals[0], millis=False), _iso(arrivals[1], millis=False)),
                size=len(records),
            )
        )


def _iso(epoch_seconds: float, *, millis: bool) -> str:
    """Lambda's timestamps in on-failure messages: UTC, `Z`, milliseconds for Kinesis, seconds for DynamoDB."""
    moment = datetime.datetime.fromtimestamp(epoch_seconds, tz=datetime.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}Z" if millis else f"{text}Z"


def on_failure_message(
    info_key: str,
    *,
    function_arn: str,
    invocations: int,
    crashed: bool,
    shard: str,
    stream_arn: str,
    first: str,
    last: str,
    arrivals: tuple[str, str],
    size: int,
) -> dict[str, Any]:
    """The invocation record Lambda sends to a stream event source's on-failure destination, field for field.

    `info_key` is `DDBStreamBatchInfo` or `KinesisBatchInfo`; the records themselves are not in it.
    """
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": invocations,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled" if crashed else None,
        },
        "version": "1.0",
        "timestamp": _iso(time.time(), millis=True),
        info_key: {
            "shardId": shard,
            "startSequenceNumber": first,
            "endSequenceNumber": last,
            "approximateArrivalOfFirstRecord": arrivals[0],
            "approximateArrivalOfLastRecord": arrivals[1],
            "batchSize": size,
            "streamArn": stream_arn,
        },
    }


def sqs_on_failure(sqs_client: Any, queue_url: str) -> Callable[[dict[str, Any]], None]:
    """An on-failure destination that sends Lambda's metadata message to an SQS queue."""
    return lambda message: sqs_client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
