"""Writers that stamp versions the way the field's writers do, and the last-writer-wins oracle they feed.

Every writer stamps `(ts, region)` with ts strictly increasing per item per region (the documented
limit); regions' clocks may be skewed, so one region can write an item older than what it already
holds from the other: last-writer-wins says that write loses, and the oracle agrees.

The writers' clocks run `AHEAD_MS` ahead of the wall clock that moto stamps on stream records, so a
delete's version is exactly `(ts of the item it removed + 1, region)` (docs/design.md#deletes: a delete is newer
than what it removed and no older than the delete itself) and the oracle can compute it from the
item that `DeleteItem(ReturnValues=ALL_OLD)` returns. A delete that removes nothing is not a change
(DynamoDB emits no stream record for it), so the oracle ignores it.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import threading
import time
import zlib
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal, localcontext
from typing import Any

from ddb_bridge.core.settings import VersionAttrs
from ddb_bridge.core.versions import Version, rank, stamp_micros, version_of

from .world import canonical_key

AHEAD_MS = 60_000
BRIDGE_ATTR = "ddbb_v"  # the bridge's own attribute (BRIDGE_VERSION_ATTR's default): not the application's data


def canonical_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item with its sets sorted, so two reads of the same item compare equal."""

    def value(v: dict[str, Any]) -> Any:
        ((tag, inner),) = v.items()
        if tag in ("SS", "NS", "BS"):
            return {tag: sorted(inner)}
        if tag == "M":
            return {"M": {k: value(x) for k, x in inner.items()}}
        if tag == "L":
            return {"L": [value(x) for x in inner]}
        return {tag: bytes(inner) if tag == "B" else inner}

    return {name: value(v) for name, v in item.items()}


@dataclass
class Oracle:
    """Every stamped write per key; the expected final state is each key's highest version."""

    writes: dict[str, list[tuple[Version | None, dict[str, Any] | None]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, key: str, version: Version | None, item: dict[str, Any] | None) -> None:
        """A put (item) or a delete (None) with its version."""
        with self._lock:
            self.writes.setdefault(key, []).append((version, item))

    def expected(self) -> dict[str, dict[str, Any]]:
        """The expected items: each key whose newest write is a put (a delete wins an exact tie).

        Without the bridge's own attribute: a write that read-modified an item the bridge had repaired
        carries it along, and it is not the application's data.
        """
        out: dict[str, dict[str, Any]] = {}
        for key, writes in self.writes.items():
            _, item = max(writes, key=lambda w: (rank(w[0]), w[1] is None))
            if item is not None:
                out[key] = canonical_item({k: v for k, v in item.items() if k != BRIDGE_ATTR})
        return out

    def conflicts(self) -> int:
        """Keys written by both regions (the writes that last-writer-wins had to settle)."""
        return sum(1 for writes in self.writes.values() if len({v.origin for v, _ in writes if v}) > 1)


@dataclass
class Clock:
    """A region's clock for stamping: wall time + AHEAD_MS + skew, strictly increasing per item."""

    skew_ms: int = 0
    last: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, key: str, at_least: int = 0) -> int:
        """The next ts for an item."""
        with self._lock:
            ts = max(int(time.time() * 1000) + AHEAD_MS + self.skew_ms, self.last.get(key, 0) + 1, at_least)
            self.last[key] = ts
            return ts

    def claim(self, key: str, ts: int) -> int:
        """Use exactly `ts` (a same-millisecond tie), keeping later stamps above it."""
        with self._lock:
            self.last[key] = max(self.last.get(key, 0), ts)
            return ts

    def after_delete(self, key: str, delete_ts: int) -> None:
        """The item's next write must be newer than its delete."""
        with self._lock:
            self.last[key] = max(self.last.get(key, 0), delete_ts)


class Writer:
    """One region's application: puts, updates and deletes with stamps, recorded in the oracle."""

    def __init__(
        self,
        ddb: Any,
        table: str,
        tag: str,
        oracle: Oracle,
        *,
        clock: Clock | None = None,
        attrs: VersionAttrs | None = None,
    ) -> None:
        self.ddb = ddb
        self.table = table
        self.tag = tag
        self.oracle = oracle
        self.clock = clock or Clock()
        self.attrs = attrs or VersionAttrs()

    def _stamp(self, ts: int) -> dict[str, Any]:
        return {self.attrs.ts: {"N": str(ts)}, self.attrs.origin: {"S": self.tag}}

    def put(self, key: dict[str, Any], body: dict[str, Any], *, ts: int | None = None) -> Version:
        """Replace the item (key + body), stamped."""
        canon = canonical_key(key)
        ts = self.clock.next(canon) if ts is None else self.clock.claim(canon, ts)
        item = {**body, **key, **self._stamp(ts)}
        self.ddb.put_item(TableName=self.table, Item=item)
        version = self._version(ts)
        self.oracle.record(canon, version, item)
        return version

    def _version(self, ts: int) -> Version:
        """The normalised version of a stamp this writer wrote (milliseconds here)."""
        micros = stamp_micros({"N": str(ts)})
        assert micros is not None
        return Version(micros, self.tag)

    def update(self, key: dict[str, Any], changes: dict[str, Any], *, ts: int | None = None) -> Version:
        """SET some attributes (creating the item if absent), stamped; the oracle gets the whole new item."""
        canon = canonical_key(key)
        ts = self.clock.next(canon) if ts is None else self.clock.claim(canon, ts)
        values = {**changes, **self._stamp(ts)}
        names = {f"#a{i}": name for i, name in enumerate(values)}
        expression = "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values)))
        item = self.ddb.update_item(
            TableName=self.table,
            Key=key,
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={f":v{i}": v for i, v in enumerate(values.values())},
            ReturnValues="ALL_NEW",
        )["Attributes"]
        version = self._version(ts)
        self.oracle.record(canon, version, item)
        return version

    def update_unstamped(self, key: dict[str, Any], changes: dict[str, Any]) -> bool:
        """SET some attributes of an existing item and leave its stamp alone (a writer that forgot it).

        Not a version: it cannot beat the stamp it left, so the bridge puts the stamped state back; the
        oracle records nothing. False when the item was absent (nothing written).
        """
        names = {f"#a{i}": name for i, name in enumerate(changes)}
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(changes))),
                ConditionExpression="attribute_exists(#k) AND attribute_exists(#ts)",
                ExpressionAttributeNames={**names, "#k": next(iter(key)), "#ts": self.attrs.ts},
                ExpressionAttributeValues={f":v{i}": v for i, v in enumerate(changes.values())},
            )
        except self.ddb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def delete(self, key: dict[str, Any]) -> Version | None:
        """Delete the item; its version is (removed ts + 1, region), or None when nothing was there."""
        canon = canonical_key(key)
        old = self.ddb.delete_item(TableName=self.table, Key=key, ReturnValues="ALL_OLD").get("Attributes")
        if not old:
            return None
        removed = version_of(old, self.attrs)
        now_us = int(time.time() * 1000) * 1000
        if removed is None:
            # An unstamped item (moto's first INSERT of an UpdateItem that creates an item is the key
            # alone, and it replicates as such): the delete's version is the stream time, below every stamp.
            version = Version(now_us, self.tag)
            self.oracle.record(canon, version, None)
            return version
        if removed.ts < now_us:
            raise AssertionError("the oracle can only version deletes of items stamped ahead of the wall clock")
        version = Version(removed.ts + 1, self.tag)  # one microsecond newer: the versions' unit
        self.clock.after_delete(canon, -(-version.ts // 1000))
        self.oracle.record(canon, version, None)
        return version


def sample_stamp() -> Decimal:
    """A stamp as the public China <-> Global sample's load_items.py writes it: `Decimal(time.time())`.

    Seconds, with every digit of the float's binary expansion (e.g. 1796180270.8668110370635986328125).
    """
    return Decimal(time.time())


def micros_of_seconds(stamp: Decimal) -> int:
    """The oracle's own reading of a seconds stamp: microseconds, finer digits dropped (docs/design.md)."""
    with localcontext() as ctx:
        ctx.prec = 100
        return int((stamp * 1_000_000).to_integral_value(rounding=ROUND_FLOOR))


class SampleWriter:
    """One region's application stamping as the public sample does (seconds as a Decimal), fed to the oracle.

    Deletes are versioned as the bridge versions them: the later of the delete's time and the removed
    item's stamp plus one microsecond. Scenarios keep a delete and any other write of its key apart in
    time, so the delete's time seen here and the stream's time agree on the order.
    """

    def __init__(self, ddb: Any, table: str, tag: str, oracle: Oracle, attrs: VersionAttrs | None = None) -> None:
        self.ddb = ddb
        self.table = table
        self.tag = tag
        self.oracle = oracle
        self.attrs = attrs or VersionAttrs()

    def put(self, key: dict[str, Any], body: dict[str, Any], *, stamp: Decimal | None = None) -> Version:
        """Replace the item, stamped `Decimal(time.time())` (or `stamp`, for a same-instant tie)."""
        stamp = sample_stamp() if stamp is None else stamp
        item = {**body, **key, self.attrs.ts: {"N": str(stamp)}, self.attrs.origin: {"S": self.tag}}
        self.ddb.put_item(TableName=self.table, Item=item)
        version = Version(micros_of_seconds(stamp), self.tag)
        self.oracle.record(canonical_key(key), version, item)
        return version

    def put_raw(self, key: dict[str, Any], body: dict[str, Any], version: Version | None) -> None:
        """Write an item stamped some other way (ms, unreadable); `version` is what the oracle takes it for."""
        item = {**body, **key}
        self.ddb.put_item(TableName=self.table, Item=item)
        self.oracle.record(canonical_key(key), version, item)

    def update(self, key: dict[str, Any], changes: dict[str, Any]) -> Version:
        """SET some attributes and the stamp (creating the item if absent); the oracle gets the whole new item."""
        stamp = sample_stamp()
        values = {**changes, self.attrs.ts: {"N": str(stamp)}, self.attrs.origin: {"S": self.tag}}
        names = {f"#a{i}": name for i, name in enumerate(values)}
        item = self.ddb.update_item(
            TableName=self.table,
            Key=key,
            UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={f":v{i}": v for i, v in enumerate(values.values())},
            ReturnValues="ALL_NEW",
        )["Attributes"]
        version = Version(micros_of_seconds(stamp), self.tag)
        self.oracle.record(canonical_key(key), version, item)
        return version

    def delete(self, key: dict[str, Any]) -> Version | None:
        """Delete the item; None when nothing was there (no stream record, no change)."""
        now_us = int(time.time() * 1_000_000)
        old = self.ddb.delete_item(TableName=self.table, Key=key, ReturnValues="ALL_OLD").get("Attributes")
        if not old:
            return None
        removed = version_of(old, self.attrs)
        version = Version(max(now_us, removed.ts + 1) if removed else now_us, self.tag)
        self.oracle.record(canonical_key(key), version, None)
        return version


def random_body(rng: random.Random, size: int = 0) -> dict[str, Any]:
    """An item body of every attribute type (binary nested too), optionally padded to `size` bytes."""
    body: dict[str, Any] = {
        "status": {"S": rng.choice(["NEW", "PAID", "SHIPPED", "已发货"])},
        "qty": {"N": str(rng.randint(-1000, 10**12))},
        "price": {"N": f"{rng.randint(0, 10**6)}.{rng.randint(1, 99):02d}".rstrip("0")},
        "blob": {"B": rng.randbytes(rng.randint(1, 24))},
        "flags": {"SS": sorted({rng.choice("abcdef") for _ in range(3)})},
        "meta": {"M": {"bin": {"B": rng.randbytes(4)}, "n": {"N": str(rng.randint(0, 9))}, "ok": {"BOOL": True}}},
        "lines": {"L": [{"S": "x"}, {"N": str(rng.randint(0, 9))}, {"NULL": True}]},
    }
    if size:
        body["pad"] = {"S": "p" * size}
    return body


# -- bridge-owned stamps ------------------------------------------------------------------------------
class PlainWriter:
    """One region's application with bridge-owned stamps: puts, updates, deletes and copies, no stamp at all.

    Every write carries a fresh nonce (`w`), so each state can be told apart in the streams; nothing else is
    recorded: the bridge versions the writes, and `BridgeOracle` judges the outcome from the streams.
    """

    def __init__(self, ddb: Any, table: str, rng: random.Random) -> None:
        self.ddb = ddb
        self.table = table
        self.rng = rng
        self.written: set[str] = set()  # nonces of the states it wrote
        self.removed: set[str | None] = set()  # nonces of the states its deletes removed

    def _nonce(self) -> dict[str, Any]:
        nonce = f"{self.rng.getrandbits(48):012x}"
        self.written.add(nonce)
        return {"w": {"S": nonce}}

    def put(self, key: dict[str, Any], body: dict[str, Any]) -> None:
        """Replace the item."""
        self.ddb.put_item(TableName=self.table, Item={**body, **key, **self._nonce()})

    def update(self, key: dict[str, Any], changes: dict[str, Any]) -> None:
        """SET some attributes (creating the item if absent); the bridge's attribute, if any, stays as it was."""
        values = {**changes, **self._nonce()}
        names = {f"#a{i}": name for i, name in enumerate(values)}
        self.ddb.update_item(
            TableName=self.table,
            Key=key,
            UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={f":v{i}": v for i, v in enumerate(values.values())},
        )

    def copy(self, key: dict[str, Any], changes: dict[str, Any]) -> bool:
        """Read the item and put it back changed, with every attribute it had (the bridge's too); False if absent."""
        item = self.ddb.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")
        if not item:
            return False
        self.ddb.put_item(TableName=self.table, Item={**item, **changes, **self._nonce()})
        return True

    def delete(self, key: dict[str, Any]) -> None:
        """Delete the item (no stream record, no change, when it is absent)."""
        old = self.ddb.delete_item(TableName=self.table, Key=key, ReturnValues="ALL_OLD").get("Attributes")
        if old:
            self.removed.add(old.get("w", {}).get("S"))


def stream_records(streams: Any, stream_arn: str) -> list[dict[str, Any]]:
    """Every record a table's stream holds, in order (a fresh iterator from TRIM_HORIZON on every shard)."""
    out: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            out.extend(page.get("Records", []))
            if not page.get("Records"):
                break
            iterator = page.get("NextShardIterator")
    return out


class VersionsDisagree(AssertionError):
    """The relays versioned changes inconsistently (the oracle cannot trust them)."""


@dataclass
class BridgeOracle:
    """The last-writer-wins outcome of a world with bridge-owned stamps, from what actually crossed.

    It reads, itself, every pack that reached each region's relay stream (base64, zlib, JSON) and both
    tables' streams (what each local change was: its image, sequence number, creation second). Before
    trusting the versions the relays gave, it checks what docs/bidirectional.md promises of them: one
    change, one version, however often it crossed; a version's time is no earlier than its stream second
    and its origin is its region; one region's versions of one item increase in stream order (a later
    local write never orders below an earlier one); with the regions' writers, every change that crossed
    is one its application made (a put of a state it wrote, a delete of a state it removed: never
    replication's own write or delete sent back). A local change the region already knew lost (to a newer
    state it held) need not cross: the peer holds what beat it. The expected state of each key is its highest-versioned
    change: the image that change wrote, or nothing.
    """

    bridge_attr: str = "ddbb_v"
    check_seconds: bool = True  # off when a test fixes the stream's creation times itself

    def expected(
        self, sides: list[Any], keys: list[str] | None = None, writers: dict[str, PlainWriter] | None = None
    ) -> dict[str, dict[str, Any]]:
        """{canonical key: item without the bridge's attribute} of the keys (all keys when None)."""
        winners: dict[str, tuple[tuple[int, int, str, int], dict[str, Any] | None]] = {}
        for side in sides:
            peer = next(s for s in sides if s is not side)
            records = {r["dynamodb"]["SequenceNumber"]: r for r in stream_records(side.streams, side.stream_arn)}
            seen: dict[int, tuple[int, int, str, int]] = {}
            chains: dict[str, set[tuple[int, tuple[int, int, str, int]]]] = {}
            for change in crossed(peer):
                key = canonical_key(json_key(json.dumps(change["k"], sort_keys=True, separators=(",", ":"))))
                if keys is not None and key not in keys:
                    continue  # another schedule's item (the relay streams outlive the tables)
                seq = int(change.get("s", "0"))
                version = (change.get("n", 1), change["t"], change["r"], seq)
                deleted = change["op"] == "D"
                if seen.setdefault(seq, version) != version:
                    raise VersionsDisagree(f"{side.region} seq {seq}: crossed as {seen[seq]} and as {version}")
                record = records.get(str(seq))
                if record is None or change["r"] != side.tag:
                    raise VersionsDisagree(f"{side.region}: {version} names no change of its stream")
                second = int(record["dynamodb"]["ApproximateCreationDateTime"].timestamp()) * 1_000_000
                if self.check_seconds and change["t"] < second:
                    raise VersionsDisagree(f"{side.region} seq {seq}: {version} earlier than its second {second}")
                writer = (writers or {}).get(side.name)
                if writer is not None and not key_only(record):
                    nonce = (record["dynamodb"].get("OldImage" if deleted else "NewImage") or {}).get("w", {})
                    if nonce.get("S") not in (writer.removed if deleted else writer.written):
                        raise VersionsDisagree(f"{side.region} seq {seq}: a change its application never made crossed")
                chains.setdefault(key, set()).add((seq, version))
                image = None if deleted else record["dynamodb"]["NewImage"]
                if key not in winners or version > winners[key][0]:
                    winners[key] = (version, image)
            for key, chain in chains.items():
                ordered = [v for _, v in sorted(chain)]
                if any(b <= a for a, b in itertools.pairwise(ordered)):
                    raise VersionsDisagree(f"{side.region} {key}: versions out of stream order {ordered}")
        out = {}
        for key, (_, image) in winners.items():
            if image is not None and (keys is None or key in keys):
                out[key] = canonical_item({k: v for k, v in image.items() if k != self.bridge_attr})
        return out


def key_only(record: dict[str, Any]) -> bool:
    """Whether a record is moto's first INSERT of an UpdateItem that creates an item: the key alone."""
    body = record["dynamodb"]
    return record["eventName"] == "INSERT" and set(body.get("NewImage") or {}) == set(body["Keys"])


def crossed(side: Any) -> list[dict[str, Any]]:
    """Every change of every pack in a region's relay stream (what its peer's relay sent it), read independently."""
    out: list[dict[str, Any]] = []
    for shard in side.kinesis.list_shards(StreamName=side.kinesis_stream)["Shards"]:
        iterator = side.kinesis.get_shard_iterator(
            StreamName=side.kinesis_stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = side.kinesis.get_records(ShardIterator=iterator, Limit=10000)
            for record in page.get("Records", []):
                data = record["Data"]
                out.extend(json.loads(zlib.decompress(data[1:]) if data[:1] == b"\x01" else data)["c"])
            if not page.get("Records"):
                break
            iterator = page.get("NextShardIterator")
    return out


def json_key(key_id: str) -> dict[str, Any]:
    """A key id (the layer's canonical Lambda-JSON key) back into the client form."""

    def value(v: dict[str, Any]) -> dict[str, Any]:
        ((tag, inner),) = v.items()
        return {"B": base64.b64decode(inner)} if tag == "B" else {tag: inner}

    return {name: value(v) for name, v in json.loads(key_id).items()}
