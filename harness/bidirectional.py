"""Builds the local world of bidirectional replication: two regions of one moto server, wired like prod.

Beijing (cn-north-1, partition aws-cn) and Singapore (ap-southeast-1, partition aws): each has its
table with a NEW_AND_OLD_IMAGES stream, a tombstone table with TTL, the Kinesis stream its peer
writes to, a parking queue, and an SSM SecureString holding the peer's access keys. Each region runs
its own stream_relay and relay_applier (`LocalFunction`: own cold start, own environment, own layer
modules), fed by a Lambda-faithful `StreamPoller` (with the template's FilterCriteria applied) and
`KinesisPoller`. The relays reach the peer's stream with the peer's keys, through a client factory
the tests can wrap (partial PutRecords failures, revoked keys).

moto runs both regions in one account (any access key maps to the default account), and its stream
records always say us-east-1: the functions never look at `awsRegion`, only at their settings.
`moto_patches` keeps streams readable after a cancelled transaction (see there).
"""

from __future__ import annotations

import functools
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import boto3
from botocore.config import Config

from ddb_bridge.core.settings import VersionAttrs

from . import moto_patches
from .chaos import Chaos
from .kinesis import Faults, FlakyPutRecords, KinesisPoller, revoke_keys
from .lambdas import LocalFunction
from .streams import StreamPoller, lambda_record
from .world import KeySchema, canonical_key, create_table, read_parked

BRIDGE_ATTR = "ddbb_v"  # the bridge's own attribute (BRIDGE_VERSION_ATTR's default)
REGION_A = "cn-north-1"  # Beijing, partition aws-cn
REGION_B = "ap-southeast-1"  # Singapore, partition aws
ATTRS = VersionAttrs()
Records = list[dict[str, Any]]


@functools.cache
def _template_filters() -> Any:
    """The stream_relay event source's FilterCriteria in templates/relay.yaml, as written there (unresolved)."""
    from scripts.render_template import find_resource  # reads template.yaml and every template it nests

    _, function = find_resource("StreamRelayFunction")
    return function["Properties"]["Events"]["LocalStream"]["Properties"]["FilterCriteria"]


def relay_filter_patterns(
    tag: str, attrs: VersionAttrs = ATTRS, stamp_mode: str = "application"
) -> list[dict[str, Any]]:
    """The stream_relay's FilterCriteria patterns as templates/relay.yaml deploys them for this stamp mode.

    Lambda filters DynamoDB records on the `dynamodb` key only. With bridge-owned stamps there is no
    filter (an empty list: every record reaches the function). With application stamps: puts stamped by
    this region, records without an origin stamp (every REMOVE, unstamped puts), and records whose OldImage
    is stamped; new items stamped by the peer (replication's own) never reach the function.
    """
    criteria = _template_filters()
    condition, when_bridge, otherwise = criteria["Fn::If"]
    assert condition == "BridgeOwnedStamps" and when_bridge == {"Ref": "AWS::NoValue"}, "unexpected FilterCriteria"
    if stamp_mode == "bridge":
        return []
    patterns = []
    for entry in otherwise["Filters"]:
        sub = entry["Pattern"]["Fn::Sub"]
        text = sub[0] if isinstance(sub, list) else sub
        text = text.replace("${VersionOriginAttribute}", attrs.origin).replace("${Tag}", tag)
        patterns.append(json.loads(text))
    return patterns


def matches(pattern: Any, value: Any, present: bool = True) -> bool:
    """Lambda event-filter matching, for the rules the patterns above use (values, exists)."""
    if isinstance(pattern, dict):
        if not present or not isinstance(value, dict):
            return all(matches(p, None, False) for p in pattern.values())
        return all(matches(p, value.get(k), k in value) for k, p in pattern.items())
    assert isinstance(pattern, list)
    for rule in pattern:
        if isinstance(rule, dict) and "exists" in rule:
            if rule["exists"] == present:
                return True
        elif present and value == rule:
            return True
    return False


def relay_filter(
    tag: str, attrs: VersionAttrs = ATTRS, on_drop: Callable[[int], None] | None = None, stamp_mode: str = "application"
) -> Callable[[Records], Records]:
    """A StreamPoller transform that drops what the event source mapping's filter would drop."""
    patterns = relay_filter_patterns(tag, attrs, stamp_mode)

    def keep(records: Records) -> Records:
        if not patterns:
            return records
        kept = [r for r in records if any(matches(p, r) for p in patterns)]
        if on_drop is not None and len(kept) < len(records):
            on_drop(len(records) - len(kept))
        return kept

    return keep


@functools.cache
def tombstone_table_spec() -> dict[str, Any]:
    """RelayTombstoneTable's properties in the application (templates/relay.yaml): tests create what deploys."""
    from scripts.render_template import find_resource  # reads template.yaml and every template it nests

    _, table = find_resource("RelayTombstoneTable")
    return dict(table["Properties"])


class CachedShardsPoller(StreamPoller):
    """A StreamPoller making one GetRecords call per poll, as Lambda's poller does.

    It lists the shards once (moto streams have one that never splits); fewer calls keep a long suite fast.
    """

    _cached: list[str] | None = None
    random_batches: random.Random | None = None  # cut each batch at a random size (up to batch_size)

    def _shards(self) -> list[str]:
        if self._cached is None:
            self._cached = super()._shards()
        return self._cached

    def _fetch(self, shard: str) -> list[dict[str, Any]]:
        buffered = self._buffer.setdefault(shard, [])
        if not buffered:
            if shard not in self._iterators:
                self._iterators[shard] = self.streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
            resp = self.streams.get_records(ShardIterator=self._iterators[shard], Limit=self.batch_size)
            self._iterators[shard] = resp.get("NextShardIterator") or self._iterators[shard]
            buffered.extend(
                lambda_record(r, self.stream_arn, self.region, whole_seconds=self.whole_seconds)
                for r in resp.get("Records", [])
            )
        size = self.random_batches.randint(1, self.batch_size) if self.random_batches else self.batch_size
        batch, self._buffer[shard] = buffered[:size], buffered[size:]
        return batch


@dataclass
class Side:
    """One region: its resources, functions, event sources, and what its functions reported."""

    region: str
    name: str
    ddb: Any
    streams: Any
    kinesis: Any
    sqs: Any
    table: str
    tombstone_table: str
    kinesis_stream: str
    parking_url: str
    keys_parameter: str
    access_key: str
    stream_arn: str = ""
    relay: LocalFunction | None = None
    applier: LocalFunction | None = None
    stream_poller: StreamPoller | None = None
    kinesis_poller: KinesisPoller | None = None
    relay_reports: list[Any] = field(default_factory=list)
    applier_reports: list[Any] = field(default_factory=list)
    filtered_out: int = 0  # stream records the FilterCriteria kept from the relay (replication's own puts)

    @property
    def tag(self) -> str:
        """The origin tag this region's writers stamp."""
        return self.region

    key_names: tuple[str, ...] = ("pk",)

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

    def get_data(self, keys: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The items of these keys that exist, as the application sees its data (without the bridge's attribute)."""
        return {k: {n: v for n, v in item.items() if n != BRIDGE_ATTR} for k, item in self.get(keys).items()}

    def data(self) -> dict[str, dict[str, Any]]:
        """Every item as the application sees its data: without the bridge's own attribute."""
        return {k: {n: v for n, v in item.items() if n != BRIDGE_ATTR} for k, item in self.items().items()}

    def get(self, keys: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The items of these keys that exist (consistent BatchGetItem), keyed by canonical key."""
        unique = {canonical_key(k): k for k in keys}
        found: dict[str, dict[str, Any]] = {}
        request: dict[str, Any] = {self.table: {"Keys": list(unique.values()), "ConsistentRead": True}}
        while request:
            response = self.ddb.batch_get_item(RequestItems=request)
            for item in response["Responses"].get(self.table, []):
                found[canonical_key({n: item[n] for n in self.key_names})] = item
            request = response.get("UnprocessedKeys") or {}
        return found

    def parked(self) -> list[dict[str, Any]]:
        """Every message in the parking queue (bodies parsed; left invisible for 5 minutes)."""
        return read_parked(self.sqs, self.parking_url)

    def clear_parked(self) -> None:
        """Delete every message of the parking queue (PurgeQueue works once a minute)."""
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.parking_url, MaxNumberOfMessages=10).get("Messages", [])
            if not msgs:
                return
            for m in msgs:
                self.sqs.delete_message(QueueUrl=self.parking_url, ReceiptHandle=m["ReceiptHandle"])

    def relay_runtime(self) -> Any:
        """The relay's warm runtime (its own copy of the layer)."""
        assert self.relay is not None
        return self.relay.layer_module("ddb_bridge.relay.stream_relay").runtime()


@dataclass
class Delivery:
    """How hostile delivery is in a world (all seeded)."""

    rng: random.Random = field(default_factory=lambda: random.Random(0))
    put_fail_rate: float = 0.0  # share of PutRecords entries refused (and retried by the relay)
    duplicate: float = 0.0  # Kinesis records delivered twice
    delay: float = 0.0  # Kinesis records delivered late, after later ones
    reorder: bool = False  # Kinesis batches shuffled
    stream_duplicate: float = 0.0  # DynamoDB stream records delivered twice in a batch
    batch_size: int = 100
    random_batches: bool = False  # each stream batch cut at a random size up to batch_size (records of one item apart)
    side_bursts: float = 0.0  # chance a side-table write starts a burst failing every round of an invocation
    kill: float = 0.0  # chance a function's request kills its invocation (before sending it or after its response)
    lost: float = 0.0  # chance a function's write goes through and its response is lost (it is sent again)
    max_retries: int = 3  # the event sources' retries of a failing batch (MaximumRetryAttempts)


class TwoRegions:
    """Two regions replicating each other through stream_relay -> Kinesis -> relay_applier."""

    def __init__(
        self,
        key_schema: KeySchema | None = None,
        *,
        name: str | None = None,
        delivery: Delivery | None = None,
        use_filter: bool = True,
        relay_env: dict[str, str] | None = None,
        applier_env: dict[str, str] | None = None,
        shards: int = 1,
        write_concurrency: int = 1,
        tombstone_ttl: bool = True,
        stamp_mode: str = "application",
    ) -> None:
        moto_patches.apply()
        self.stamp_mode = stamp_mode
        self.tombstone_ttl = tombstone_ttl
        self.write_concurrency = write_concurrency  # 1: seeded schedules replay exactly
        self.key_schema = key_schema or [("pk", "S")]
        self.name = name or f"orders-{uuid.uuid4().hex[:6]}"
        self.delivery = delivery or Delivery()
        self.use_filter = use_filter
        self.revoked: set[str] = set()
        self.revoked_code = "UnrecognizedClientException"
        self.flaky: list[FlakyPutRecords] = []
        self.chaos = Chaos(rng=self.delivery.rng, side_tables={f"{self.name}-tombstones"})
        self.a = self._side(REGION_A, "a", shards)
        self.b = self._side(REGION_B, "b", shards)
        self._keys(self.a, self.b)
        self._keys(self.b, self.a)
        for side, peer in ((self.a, self.b), (self.b, self.a)):
            self._functions(side, peer, relay_env or {}, applier_env or {})
        self._tables()

    # -- building -------------------------------------------------------------------------------
    def _side(self, region: str, suffix: str, shards: int) -> Side:
        ddb = boto3.client("dynamodb", region_name=region)
        kinesis = boto3.client("kinesis", region_name=region)
        sqs = boto3.client("sqs", region_name=region)
        stream = f"{self.name}-inbound"
        kinesis.create_stream(StreamName=stream, ShardCount=shards)
        parking = sqs.create_queue(QueueName=f"{self.name}-parking")["QueueUrl"]
        return Side(
            region=region,
            name=suffix,
            ddb=ddb,
            streams=boto3.client("dynamodbstreams", region_name=region),
            kinesis=kinesis,
            sqs=sqs,
            table=self.name,
            tombstone_table=f"{self.name}-tombstones",
            kinesis_stream=stream,
            parking_url=parking,
            keys_parameter=f"/ddb-bridge/{self.name}/peer-keys",
            access_key=f"AKIA{suffix.upper()}{uuid.uuid4().hex[:15].upper()}",
        )

    def _keys(self, side: Side, peer: Side) -> None:
        """Store the peer's writer keys in this side's SSM (what an operator does once)."""
        self.put_keys(side, peer.access_key)

    def put_keys(self, side: Side, access_key: str) -> None:
        """(Re)write the SecureString holding the peer keys that `side`'s relay uses (a rotation)."""
        value = json.dumps({"accessKeyId": access_key, "secretAccessKey": "local-secret-" + access_key[-6:]})
        boto3.client("ssm", region_name=side.region).put_parameter(
            Name=side.keys_parameter, Value=value, Type="SecureString", Overwrite=True
        )

    def put_sample_keys(self, side: Side, prefix: str, access_key: str) -> None:
        """Store peer keys as the public China <-> Global sample does, in `side`'s region.

        `<prefix>AccessKey` (String) and `<prefix>SecretKey` (SecureString): what the relay reads with
        PEER_CREDENTIALS_PARAMETER_PREFIX.
        """
        ssm = boto3.client("ssm", region_name=side.region)
        ssm.put_parameter(Name=prefix + "AccessKey", Value=access_key, Type="String", Overwrite=True)
        secret = "local-secret-" + access_key[-6:]
        ssm.put_parameter(Name=prefix + "SecretKey", Value=secret, Type="SecureString", Overwrite=True)

    def _functions(self, side: Side, peer: Side, relay_env: dict[str, str], applier_env: dict[str, str]) -> None:
        common = {
            "AWS_REGION": side.region,
            "AWS_DEFAULT_REGION": side.region,
            "LOCAL_REGION_TAG": side.tag,
            "LOCAL_TABLE_NAME": side.table,
            "TOMBSTONE_TABLE_NAME": side.tombstone_table,
            "PARKING_QUEUE_URL": side.parking_url,
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "WRITE_CONCURRENCY": str(self.write_concurrency),
            "STAMP_MODE": self.stamp_mode,
        }
        side.relay = LocalFunction(
            "stream_relay",
            {
                **common,
                "POWERTOOLS_SERVICE_NAME": f"stream_relay-{side.name}",
                "PEER_REGION": peer.region,
                "PEER_STREAM_NAME": peer.kinesis_stream,
                "PEER_CREDENTIALS_PARAMETER": side.keys_parameter,
                "PEER_CREDENTIALS_MAX_AGE": "300",
                **relay_env,
            },
        )
        side.applier = LocalFunction(
            "relay_applier", {**common, "POWERTOOLS_SERVICE_NAME": f"relay_applier-{side.name}", **applier_env}
        )
        side.relay.layer_module("ddb_bridge.relay.stream_relay").report_listeners.append(side.relay_reports.append)
        side.applier.layer_module("ddb_bridge.relay.applier").report_listeners.append(side.applier_reports.append)
        runtime = side.relay_runtime()
        runtime.peer.client_factory = self._peer_client_factory()
        runtime.peer.sleep = lambda seconds: None
        applier_local = side.applier.layer_module("ddb_bridge.relay.applier").runtime().local
        for local in (runtime.local, applier_local):
            local.sleep = lambda seconds: None  # retry rounds without the waits: the faults are injected, not real
            self.chaos.attach(local.dynamodb)
        d = self.delivery
        faults = Faults(rng=d.rng, duplicate=d.duplicate, delay=d.delay, reorder=d.reorder)
        side.kinesis_poller = KinesisPoller(
            side.kinesis,
            side.kinesis_stream,
            side.applier.invoke,
            region=side.region,
            batch_size=d.batch_size,
            faults=faults,
        )

    def _peer_client_factory(self) -> Callable[[boto3.Session, str, Config], Any]:
        def factory(session: boto3.Session, region: str, config: Config) -> Any:
            client = self.chaos.attach(session.client("kinesis", region_name=region, config=config))
            revoke_keys(client, self.revoked, self.revoked_code)  # read at each call: revoking later applies
            flaky = FlakyPutRecords(client, rng=self.delivery.rng, fail_rate=self.delivery.put_fail_rate)
            self.flaky.append(flaky)
            return flaky

        return factory

    def configure(self, delivery: Delivery) -> None:
        """Change how hostile delivery is (between schedules): every event source and peer client."""
        self.delivery = delivery
        for flaky in self.flaky:
            flaky.rng, flaky.fail_rate = delivery.rng, delivery.put_fail_rate
        self.chaos.rng = delivery.rng
        self.chaos.side_bursts, self.chaos.kill, self.chaos.lost = delivery.side_bursts, delivery.kill, delivery.lost
        for side in self.sides:
            assert side.kinesis_poller is not None
            side.kinesis_poller.faults = Faults(
                rng=delivery.rng, duplicate=delivery.duplicate, delay=delivery.delay, reorder=delivery.reorder
            )
            side.kinesis_poller.batch_size = delivery.batch_size
            side.kinesis_poller.max_retries = delivery.max_retries
            if side.stream_poller is not None:
                side.stream_poller.batch_size = delivery.batch_size
                side.stream_poller.max_retries = delivery.max_retries
                side.stream_poller.random_batches = delivery.rng if delivery.random_batches else None

    def put_failures(self) -> int:
        """PutRecords entries refused so far (and retried by the relays)."""
        return sum(f.injected for f in self.flaky)

    def _tables(self) -> None:
        """Create (or re-create, empty, with fresh streams) both sides' tables, and their stream pollers."""
        for side in (self.a, self.b):
            side.key_names = tuple(name for name, _ in self.key_schema)
            side.stream_arn = create_table(side.ddb, side.table, self.key_schema, stream=True)
            spec = tombstone_table_spec()
            side.ddb.create_table(
                TableName=side.tombstone_table,
                KeySchema=spec["KeySchema"],
                AttributeDefinitions=spec["AttributeDefinitions"],
                BillingMode=spec["BillingMode"],
            )
            if self.tombstone_ttl:  # as the template declares it (moto never expires items: off in long suites)
                side.ddb.update_time_to_live(
                    TableName=side.tombstone_table, TimeToLiveSpecification=spec["TimeToLiveSpecification"]
                )
            assert side.relay is not None
            transforms = (
                [relay_filter(side.tag, on_drop=partial(self._filtered, side), stamp_mode=self.stamp_mode)]
                if self.use_filter
                else []
            )
            transforms.append(self._stream_duplicates)  # reads the current delivery at each batch
            side.stream_poller = CachedShardsPoller(
                side.streams,
                side.stream_arn,
                side.relay.invoke,
                region=side.region,
                batch_size=self.delivery.batch_size,
                transform=_chain(transforms),
            )
            side.stream_poller.whole_seconds = self.stamp_mode == "bridge"
            side.stream_poller.max_retries = self.delivery.max_retries
            side.stream_poller.random_batches = self.delivery.rng if self.delivery.random_batches else None

    def _filtered(self, side: Side, dropped: int) -> None:
        side.filtered_out += dropped

    def _stream_duplicates(self, records: Records) -> Records:
        if not self.delivery.stream_duplicate:
            return records
        out: Records = []
        for record in records:
            out.append(record)
            if self.delivery.rng.random() < self.delivery.stream_duplicate:
                out.append(record)
        return out

    def reset_tables(self, key_schema: KeySchema | None = None) -> None:
        """Fresh, empty tables with the same names (the warm functions keep working): one per schedule.

        moto copies a whole table on every transaction, so small tables keep a long suite fast.
        """
        for side in (self.a, self.b):
            side.ddb.delete_table(TableName=side.table)
            side.ddb.delete_table(TableName=side.tombstone_table)
            side.relay_reports.clear()
            side.applier_reports.clear()
        self.key_schema = key_schema or self.key_schema
        self._tables()

    # -- running ---------------------------------------------------------------------------------
    @property
    def sides(self) -> tuple[Side, Side]:
        """Both regions."""
        return (self.a, self.b)

    def peer_of(self, side: Side) -> Side:
        """The other region."""
        return self.b if side is self.a else self.a

    def pump(self, rng: random.Random) -> int:
        """One random delivery step: one of the four event sources polls once; returns records taken."""
        side = rng.choice(self.sides)
        if rng.random() < 0.5:
            assert side.stream_poller is not None
            return side.stream_poller.poll_once()
        assert side.kinesis_poller is not None
        return side.kinesis_poller.poll_once()

    def drain(self, *, max_polls: int = 400) -> int:
        """Run the event sources until none can have anything left; returns the polls made.

        A source is polled until it comes back empty; it is polled again only when something upstream
        ran since (a relay feeds its peer's Kinesis stream and may repair its own table; an applier
        writes its table, whose stream its relay reads), so the last pass costs no needless calls.
        """
        a, b = self.a, self.b
        assert a.stream_poller and a.kinesis_poller and b.stream_poller and b.kinesis_poller
        streams = {"a": a.stream_poller, "b": b.stream_poller}
        kinesis = {"a": a.kinesis_poller, "b": b.kinesis_poller}
        # Both relays before the appliers: Lambda polls a table's stream four times a second and the Kinesis
        # stream once, and a change reaches the peer's applier a relay, a PutRecords and a poll later.
        order = [("stream", "a"), ("stream", "b"), ("kinesis", "b"), ("kinesis", "a")]
        dirty = set(order)
        polls = 0
        while dirty:
            for kind, name in order:
                if (kind, name) not in dirty:
                    continue
                polls += 1
                if polls > max_polls:
                    raise TimeoutError(f"replication did not settle in {max_polls} polls (a loop?)")
                if kind == "stream":
                    moved = streams[name].poll_once()
                    downstream = [("kinesis", "b" if name == "a" else "a"), ("stream", name)]
                else:
                    moved = kinesis[name].poll_once() + len(kinesis[name]._late)
                    downstream = [("stream", name), ("kinesis", name)]
                if moved:
                    dirty.update(downstream)
                else:
                    dirty.discard((kind, name))
        return polls


def _chain(transforms: list[Callable[[Records], Records]]) -> Callable[[Records], Records]:
    def run(records: Records) -> Records:
        for transform in transforms:
            records = transform(records)
        return records

    return run
