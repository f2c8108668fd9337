"""A model of the public China <-> Global DynamoDB replication sample, measured beside ddb-bridge.

The sample (AWS's published bidirectional replication example between a China and a Global region)
has two Lambda functions per region. This is our own model of what they do, written from reading them:

- **send_to_kinesis** (on the table's stream, batches of 500, no event filter): an INSERT or MODIFY
  whose NewImage's `last_updater_region` is the target region is skipped (replication wrote it);
  every other INSERT/MODIFY becomes one Kinesis record whose data is Python's `str()` of
  `{'event_name': ..., 'new_image': <NewImage as Lambda gives it>}`, partition key the item's hash
  key; every REMOVE becomes one record with its OldImage, including the REMOVEs that replication
  itself caused (the replicator on the other side sorts them out). All records go in one PutRecords
  call; if any record fails, the function raises and Lambda retries the whole batch, so the records
  that did go in are put again.
- **replicator** (on the Kinesis stream, batches of 500): per record, `ast.literal_eval` of the text.
  INSERT/MODIFY: PutItem of the image as it came, on condition
  `attribute_not_exists(<hash key>) OR last_update_timestamp < :its ts`. REMOVE: DeleteItem on condition
  `attribute_exists(<hash key>) AND last_update_timestamp <= :the removed item's ts`. A failed
  condition is a stale change, counted; any other error raises and Lambda retries the whole batch.
  After each batch it adds the count to a counter item (UpdateItem on a stats table) and puts two
  CloudWatch metrics (not modelled: no DynamoDB cost).

Where the model departs from the sample, it does so in the sample's favour or not at all: key
attribute names come from the table (the sample hard-codes a hash key named `PK`), so range keys work.
Faithfully kept: Lambda's JSON gives binary values as base64 text, and the replicator hands that text
to the low-level client, which base64-encodes it again: binary attributes arrive double-encoded.
Ties on `last_update_timestamp` have no tie-break: each region refuses the other's write.

`SampleTwoRegions` runs both regions of the sample in the same harness as `bidirectional.TwoRegions`:
the same moto, the same Lambda-faithful event sources (`CachedShardsPoller`, `KinesisPoller`), the same
hostile-delivery knobs.
"""

from __future__ import annotations

import ast
import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

from .bidirectional import REGION_A, REGION_B, CachedShardsPoller, Delivery
from .kinesis import Faults, FlakyPutRecords, KinesisPoller
from .world import KeySchema, canonical_key, create_table

TS = "last_update_timestamp"
ORIGIN = "last_updater_region"
BATCH = 500  # the sample's event sources: batch size 500 (PutRecords takes at most 500 records)


@dataclass
class SampleStats:
    """What the sample's functions did."""

    relay_invocations: int = 0
    relay_errors: int = 0
    records_sent: int = 0
    skipped: int = 0
    removes_sent: int = 0
    replicator_invocations: int = 0
    replicator_errors: int = 0
    applied: int = 0
    stale: int = 0


class SampleRelay:
    """send_to_kinesis: a stream batch -> one PutRecords of one `str(dict)` record per change."""

    def __init__(self, kinesis: Any, stream: str, target_region: str, hash_key: str, stats: SampleStats) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.target_region = target_region
        self.hash_key = hash_key
        self.stats = stats

    def handle(self, event: dict[str, Any], context: Any = None) -> None:
        """The whole invocation; raises (whole batch retried) when a record fails."""
        self.stats.relay_invocations += 1
        entries: list[dict[str, Any]] = []
        for record in event["Records"]:
            body = record["dynamodb"]
            name = record["eventName"]
            if name in ("INSERT", "MODIFY"):
                image = body["NewImage"]
                if image.get(ORIGIN, {}).get("S") == self.target_region:
                    self.stats.skipped += 1
                    continue
                data = str({"event_name": name, "new_image": image})
            elif name == "REMOVE":
                image = body["OldImage"]
                data = str({"event_name": name, "old_image": image})
                self.stats.removes_sent += 1
            else:
                continue
            entries.append({"Data": data.encode("utf-8"), "PartitionKey": _text(image[self.hash_key])})
        if not entries:
            return
        response = self.kinesis.put_records(StreamName=self.stream, Records=entries)
        if response["FailedRecordCount"]:
            self.stats.relay_errors += 1
            raise RuntimeError(f"{response['FailedRecordCount']} records failed: the whole batch is retried")
        self.stats.records_sent += len(entries)


class SampleReplicator:
    """replicator: Kinesis batch -> one conditional PutItem / DeleteItem per record, then a counter update."""

    def __init__(
        self, ddb: Any, table: str, key_names: tuple[str, ...], stats_table: str | None, stats: SampleStats
    ) -> None:
        self.ddb = ddb
        self.table = table
        self.key_names = key_names
        self.stats_table = stats_table
        self.stats = stats

    def handle(self, event: dict[str, Any], context: Any = None) -> None:
        """The whole invocation; raises on an error other than a failed condition (whole batch retried)."""
        self.stats.replicator_invocations += 1
        applied = 0
        names = {"#h": self.key_names[0], "#ts": TS}
        try:
            for record in event["Records"]:
                change = ast.literal_eval(base64.b64decode(record["kinesis"]["data"]).decode("utf-8"))
                try:
                    if change.get("event_name") in ("INSERT", "MODIFY"):
                        image = change["new_image"]
                        self.ddb.put_item(
                            TableName=self.table,
                            Item=image,
                            ConditionExpression="attribute_not_exists(#h) OR #ts < :ts",
                            ExpressionAttributeNames=names,
                            ExpressionAttributeValues={":ts": image[TS]},
                        )
                    elif change.get("event_name") == "REMOVE":
                        old = change["old_image"]
                        self.ddb.delete_item(
                            TableName=self.table,
                            Key={name: old[name] for name in self.key_names},
                            ConditionExpression="attribute_exists(#h) AND #ts <= :ts",
                            ExpressionAttributeNames=names,
                            ExpressionAttributeValues={":ts": old[TS]},
                        )
                    applied += 1
                except ClientError as error:
                    if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                        raise
                    self.stats.stale += 1
        except Exception:
            self.stats.replicator_errors += 1
            self._count(applied)
            raise
        self._count(applied)

    def _count(self, applied: int) -> None:
        self.stats.applied += applied
        if applied and self.stats_table:
            self.ddb.update_item(
                TableName=self.stats_table,
                Key={"PK": {"S": "replicated_count"}},
                UpdateExpression="SET cnt = cnt + :n",
                ExpressionAttributeValues={":n": {"N": str(applied)}},
            )


def _text(value: dict[str, Any]) -> str:
    ((_, inner),) = value.items()
    return inner if isinstance(inner, str) else str(inner)


@dataclass
class SampleSide:
    """One region of the sample: its table, Kinesis stream, functions and event sources."""

    region: str
    ddb: Any
    kinesis: Any
    table: str
    kinesis_stream: str
    stats_table: str
    key_names: tuple[str, ...]
    stats: SampleStats = field(default_factory=SampleStats)
    stream_arn: str = ""
    relay: SampleRelay | None = None
    replicator: SampleReplicator | None = None
    stream_poller: CachedShardsPoller | None = None
    kinesis_poller: KinesisPoller | None = None
    on_failure: list[dict[str, Any]] = field(default_factory=list)  # batches Lambda gave up on

    @property
    def tag(self) -> str:
        """What the region's writers stamp in last_updater_region."""
        return self.region

    def items(self) -> dict[str, dict[str, Any]]:
        """Every item of the table (a consistent scan), keyed by canonical key."""
        items: dict[str, dict[str, Any]] = {}
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        while True:
            page = self.ddb.scan(**kwargs)
            for item in page.get("Items", []):
                items[canonical_key({n: item[n] for n in self.key_names})] = item
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class SampleTwoRegions:
    """Beijing and Singapore replicating each other the sample's way, in the harness's moto."""

    def __init__(
        self,
        key_schema: KeySchema | None = None,
        *,
        name: str | None = None,
        delivery: Delivery | None = None,
        kinesis_wrapper: Callable[[Any], Any] | None = None,
    ) -> None:
        self.key_schema = key_schema or [("pk", "S")]
        self.name = name or f"sample-{uuid.uuid4().hex[:6]}"
        self.delivery = delivery or Delivery(batch_size=BATCH)
        self.flaky: list[FlakyPutRecords] = []
        self.a = self._side(REGION_A)
        self.b = self._side(REGION_B)
        for side, peer in ((self.a, self.b), (self.b, self.a)):
            self._wire(side, peer, kinesis_wrapper)

    def _side(self, region: str) -> SampleSide:
        ddb = boto3.client("dynamodb", region_name=region)
        kinesis = boto3.client("kinesis", region_name=region)
        stream = f"{self.name}-inbound"
        kinesis.create_stream(StreamName=stream, ShardCount=1)
        stats_table = f"{self.name}-stats"
        create_table(ddb, stats_table, [("PK", "S")])
        ddb.put_item(TableName=stats_table, Item={"PK": {"S": "replicated_count"}, "cnt": {"N": "0"}})
        side = SampleSide(region, ddb, kinesis, self.name, stream, stats_table, tuple(n for n, _ in self.key_schema))
        side.stream_arn = create_table(ddb, self.name, self.key_schema, stream=True)
        return side

    def _wire(self, side: SampleSide, peer: SampleSide, kinesis_wrapper: Callable[[Any], Any] | None) -> None:
        # The relay writes the peer's stream with the peer's keys; moto maps every key to one account.
        target = boto3.client("kinesis", region_name=peer.region)
        if kinesis_wrapper is not None:
            kinesis_wrapper(target)
        flaky = FlakyPutRecords(target, rng=self.delivery.rng, fail_rate=self.delivery.put_fail_rate)
        self.flaky.append(flaky)
        side.relay = SampleRelay(flaky, peer.kinesis_stream, peer.region, side.key_names[0], side.stats)
        side.replicator = SampleReplicator(side.ddb, side.table, side.key_names, side.stats_table, side.stats)
        d = self.delivery
        side.stream_poller = CachedShardsPoller(
            boto3.client("dynamodbstreams", region_name=side.region),
            side.stream_arn,
            side.relay.handle,
            region=side.region,
            batch_size=d.batch_size,
            max_retries=300,  # the sample's event source: 300 retry attempts
            on_failure=side.on_failure.append,
            transform=self._stream_duplicates,
        )
        side.kinesis_poller = KinesisPoller(
            side.kinesis,
            side.kinesis_stream,
            side.replicator.handle,
            region=side.region,
            batch_size=d.batch_size,
            max_retries=100,  # the sample's event source: 100 retry attempts, no bisection
            bisect=False,
            on_failure=side.on_failure.append,
            faults=Faults(rng=d.rng, duplicate=d.duplicate, delay=d.delay, reorder=d.reorder),
        )

    def _stream_duplicates(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.delivery.stream_duplicate:
            return records
        out: list[dict[str, Any]] = []
        for record in records:
            out.append(record)
            if self.delivery.rng.random() < self.delivery.stream_duplicate:
                out.append(record)
        return out

    @property
    def sides(self) -> tuple[SampleSide, SampleSide]:
        """Both regions."""
        return (self.a, self.b)

    def drain(self, *, max_polls: int = 100_000) -> int:
        """Run the four event sources until none has anything left (the same schedule as TwoRegions.drain)."""
        a, b = self.a, self.b
        assert a.stream_poller and a.kinesis_poller and b.stream_poller and b.kinesis_poller
        return drain_sources(a.stream_poller, b.kinesis_poller, b.stream_poller, a.kinesis_poller, max_polls=max_polls)


def drain_sources(
    a_stream: CachedShardsPoller,
    b_kinesis: KinesisPoller,
    b_stream: CachedShardsPoller,
    a_kinesis: KinesisPoller,
    *,
    max_polls: int,
) -> int:
    """Poll in the direction data flows until every source came back empty since anything upstream ran."""
    sources: dict[str, Any] = {"sa": a_stream, "kb": b_kinesis, "sb": b_stream, "ka": a_kinesis}
    downstream = {"sa": ("kb", "sa"), "kb": ("sb", "kb"), "sb": ("ka", "sb"), "ka": ("sa", "ka")}
    order = ["sa", "kb", "sb", "ka"]
    dirty = set(order)
    polls = 0
    while dirty:
        for name in order:
            if name not in dirty:
                continue
            polls += 1
            if polls > max_polls:
                raise TimeoutError(f"replication did not settle in {max_polls} polls (a loop?)")
            source = sources[name]
            moved = source.poll_once() + (len(source._late) if isinstance(source, KinesisPoller) else 0)
            if moved:
                dirty.update(downstream[name])
            else:
                dirty.discard(name)
    return polls
