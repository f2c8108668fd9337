"""Named regressions of bidirectional replication, Beijing <-> Singapore on moto over HTTP.

Each test builds both regions (tables, streams, tombstone tables, Kinesis streams, SSM keys, four
functions with their own cold starts) and drives delivery step by step where order matters.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import time
from typing import Any

import pytest

from ddb_bridge.core.versions import Version
from ddb_bridge.ops.replay import replay
from ddb_bridge.relay.packs import WireChange, encode
from harness.bidirectional import BRIDGE_ATTR, Delivery, TwoRegions
from harness.lww import AHEAD_MS, Clock, Oracle, Writer, canonical_item, random_body
from harness.world import canonical_key

TS = "last_update_timestamp"
ORIGIN = "last_updater_region"


def stamped(key: dict[str, Any], ts: int, origin: str, **attrs: Any) -> dict[str, Any]:
    return {**key, **attrs, TS: {"N": str(ts)}, ORIGIN: {"S": origin}}


def now_ms() -> int:
    return int(time.time() * 1000)


def total(reports: list[Any], field: str) -> int:
    return sum(getattr(r, field) for r in reports)


@pytest.fixture
def world(aws) -> TwoRegions:
    return TwoRegions()


def test_same_millisecond_tie_converges_on_the_origin(world):
    # GIVEN both regions write the same item in the same millisecond, neither knowing of the other
    key = {"pk": {"S": "order#tie"}}
    ts = now_ms()
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped(key, ts, world.a.tag, v={"S": "beijing"}))
    world.b.ddb.put_item(TableName=world.b.table, Item=stamped(key, ts, world.b.tag, v={"S": "singapore"}))
    # WHEN both changes cross the border
    world.drain()
    # THEN both regions keep the same winner: equal ts, so the origin decides ("cn-north-1" > "ap-southeast-1")
    winner = canonical_item(stamped(key, ts, world.a.tag, v={"S": "beijing"}))
    assert {k: canonical_item(v) for k, v in world.a.items().items()} == {canonical_key(key): winner}
    assert {k: canonical_item(v) for k, v in world.b.items().items()} == {canonical_key(key): winner}
    # AND Beijing refused Singapore's version as stale, Singapore applied Beijing's
    assert total(world.a.applier_reports, "stale") == 1 and total(world.a.applier_reports, "applied") == 0
    assert total(world.b.applier_reports, "applied") == 1


def test_delete_beats_a_late_older_put_no_resurrection(world):
    # GIVEN an item both regions hold
    key = {"pk": {"S": "order#late"}}
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped(key, 1_000, world.a.tag, v={"S": "v1"}))
    world.drain()
    assert canonical_key(key) in world.b.items()
    # WHEN Singapore deletes it (version: the delete's time), and Beijing's clock, far behind, writes it
    # again with an older version before the delete arrives
    world.b.ddb.delete_item(TableName=world.b.table, Key=key)
    world.b.stream_poller.poll_once()  # Singapore's relay: the delete leaves for Beijing, tombstone kept
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped(key, 2_000, world.a.tag, v={"S": "late"}))
    world.a.stream_poller.poll_once()  # Beijing's relay: the late put leaves for Singapore
    world.b.kinesis_poller.poll_once()  # the late put reaches Singapore, where the item is gone
    # THEN Singapore's tombstone refuses it: nothing comes back
    assert world.b.items() == {}
    assert total(world.b.applier_reports, "stale") == 1
    # AND after everything is delivered, the delete wins in both regions
    world.drain()
    assert world.a.items() == {} and world.b.items() == {}


def test_recreate_after_delete_survives_the_echo(world):
    # GIVEN an item both regions hold, stamped with real clock time
    key = {"pk": {"S": "order#recreate"}}
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped(key, now_ms(), world.a.tag, v={"S": "v1"}))
    world.drain()
    # WHEN Beijing deletes it and creates it again at once, each change crossing on its own
    world.a.stream_poller.batch_size = 1
    world.a.ddb.delete_item(TableName=world.a.table, Key=key)
    time.sleep(0.005)
    recreated = stamped(key, now_ms(), world.a.tag, v={"S": "v2"})
    world.a.ddb.put_item(TableName=world.a.table, Item=recreated)
    world.a.stream_poller.poll_once()  # the delete leaves Beijing
    time.sleep(0.01)  # Singapore applies it later than Beijing's re-creation was stamped
    world.b.kinesis_poller.poll_once()  # Singapore deletes the item: its stream says REMOVE
    world.b.stream_poller.poll_once()  # Singapore's relay sees that REMOVE
    # THEN the REMOVE is recognised as replication's own and does not travel back (its version, the
    # time Singapore applied it, would be newer than Beijing's re-creation and delete it)
    assert total(world.b.relay_reports, "echoes_dropped") == 1
    assert total(world.b.relay_reports, "forwarded") == 0
    world.drain()
    assert {k: canonical_item(v) for k, v in world.a.items().items()} == {canonical_key(key): canonical_item(recreated)}
    assert world.a.items() == world.b.items()


def test_local_delete_of_a_peer_written_item_replicates(world):
    # GIVEN an item last written by Beijing, replicated to Singapore
    key = {"pk": {"S": "order#peer-written"}}
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped(key, now_ms(), world.a.tag, v={"S": "v1"}))
    world.drain()
    assert canonical_key(key) in world.b.items()
    # WHEN Singapore deletes it locally
    world.b.ddb.delete_item(TableName=world.b.table, Key=key)
    world.drain()
    # THEN the delete crosses and Beijing deletes it too
    assert world.a.items() == {} and world.b.items() == {}
    assert total(world.b.relay_reports, "forwarded") == 1
    assert total(world.a.applier_reports, "applied") == 1


def test_item_without_version_attributes(world):
    # GIVEN a legacy writer in Beijing that stamps nothing (and one whose stamp is not even a number)
    legacy = {"pk": {"S": "legacy#1"}, "v": {"S": "old"}, "blob": {"B": b"\x00\xff"}}
    malformed = {"pk": {"S": "legacy#2"}, TS: {"S": "yesterday"}}
    world.a.ddb.put_item(TableName=world.a.table, Item=legacy)
    world.a.ddb.put_item(TableName=world.a.table, Item=malformed)
    # WHEN replication drains
    world.drain()
    # THEN Singapore holds both exactly as written (older than any stamp, but replicated; the bridge versioned
    # them in its own attribute), and the applier's writes were recognised by that attribute: nothing came back
    assert world.b.data() == world.a.data()
    assert all(BRIDGE_ATTR in item for item in world.b.items().values())
    assert total(world.b.relay_reports, "echoes_dropped") == 2
    assert total(world.b.relay_reports, "forwarded") == 0
    # AND a stamped write from Singapore beats the unstamped item in both regions
    newer = stamped({"pk": {"S": "legacy#1"}}, now_ms(), world.b.tag, v={"S": "stamped"})
    world.b.ddb.put_item(TableName=world.b.table, Item=newer)
    world.drain()
    assert canonical_item(world.a.items()[canonical_key({"pk": {"S": "legacy#1"}})]) == canonical_item(newer)
    # AND an unstamped write over a stamped item loses (last-writer-wins): it is put back, in both regions
    world.a.ddb.put_item(TableName=world.a.table, Item=legacy)
    world.drain()
    # (the state put back carries the bridge's attribute, so that the repair's own record does not cross again)
    assert canonical_item(world.a.data()[canonical_key({"pk": {"S": "legacy#1"}})]) == canonical_item(newer)
    assert BRIDGE_ATTR in world.a.items()[canonical_key({"pk": {"S": "legacy#1"}})]
    assert world.a.data() == world.b.data()
    assert total(world.a.relay_reports, "reverted") == 1


@pytest.mark.parametrize("replicate", [True, False])
def test_ttl_delete_follows_the_setting(aws, replicate):
    # GIVEN relays told to replicate TTL deletes, or not, and an item both regions hold
    world = TwoRegions(relay_env={"REPLICATE_TTL_DELETES": str(replicate).lower()})
    key = {"pk": {"S": "session#1"}}
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped(key, now_ms(), world.a.tag, expires={"N": "1"}))
    world.drain()
    # WHEN DynamoDB's TTL deletes it in Beijing (moto has no TTL: the REMOVE is marked as TTL's own)
    filtered = world.a.stream_poller.transform

    def as_ttl(records):
        for record in records:
            if record["eventName"] == "REMOVE":
                record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
        return filtered(records) if filtered else records

    world.a.stream_poller.transform = as_ttl
    world.a.ddb.delete_item(TableName=world.a.table, Key=key)
    world.drain()
    # THEN Singapore deletes it too only when told to (otherwise its own TTL will)
    assert world.a.items() == {}
    assert (world.b.items() == {}) is replicate
    assert total(world.a.relay_reports, "ttl_skipped") == (0 if replicate else 1)


@pytest.mark.parametrize(
    "schema",
    [[("pk", "B")], [("pk", "S"), ("sk", "B")], [("pk", "N"), ("sk", "S")], [("pk", "B"), ("sk", "N")]],
    ids=["binary", "string+binary", "number+string", "binary+number"],
)
def test_binary_and_composite_keys(aws, schema):
    # GIVEN tables with this key schema, and writes from both regions (binary nested in maps too)
    world = TwoRegions(schema)
    oracle = Oracle()
    rng = random.Random(7)
    writers = [Writer(s.ddb, s.table, s.tag, oracle, clock=Clock()) for s in world.sides]
    values = {"S": lambda i: {"S": f"k{i}"}, "N": lambda i: {"N": str(i)}, "B": lambda i: {"B": bytes([i, 0, 255])}}
    keys = [{name: values[kind](i) for name, kind in schema} for i in range(4)]
    for i, key in enumerate(keys):
        writers[i % 2].put(key, random_body(rng))
    world.drain()
    writers[1].update(keys[0], {"blob": {"B": b"\x00\x01\x02"}})
    writers[0].delete(keys[1])
    writers[1].delete(keys[2])
    # WHEN replication drains
    world.drain()
    # THEN both regions hold exactly the oracle's items, binary values byte for byte (not double-encoded)
    a = {k: canonical_item(v) for k, v in world.a.items().items()}
    assert a == {k: canonical_item(v) for k, v in world.b.items().items()} == oracle.expected()
    assert a[canonical_key(keys[0])]["blob"] == {"B": b"\x00\x01\x02"}


def test_echoes_are_dropped_in_code_when_no_filter_runs(aws):
    # GIVEN event sources without FilterCriteria (the same rule must hold in the relay's code)
    world = TwoRegions(use_filter=False)
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped({"pk": {"S": "x"}}, now_ms(), world.a.tag))
    # WHEN Beijing's change reaches Singapore, whose stream then shows the replicated write
    world.drain()
    # THEN Singapore's relay drops it before the border: nothing is sent back
    assert total(world.b.relay_reports, "echoes_dropped") == 1
    assert total(world.b.relay_reports, "forwarded") == 0
    assert total(world.a.applier_reports, "changes") == 0


def test_a_local_write_older_than_what_the_region_holds_is_reverted(world):
    # GIVEN an item Singapore holds from Beijing
    key = {"pk": {"S": "order#skew"}}
    ts = now_ms() + AHEAD_MS
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped(key, ts, world.a.tag, v={"S": "newer"}))
    world.drain()
    # WHEN a Singapore writer whose clock is behind overwrites it with an older version
    world.b.ddb.put_item(TableName=world.b.table, Item=stamped(key, ts - 50, world.b.tag, v={"S": "older"}))
    world.drain()
    # THEN last-writer-wins: Singapore's write lost, the newer state is back (marked as the bridge's repair),
    # nothing crossed
    assert world.b.data() == world.a.data()
    assert world.a.items()[canonical_key(key)]["v"] == {"S": "newer"}
    assert total(world.b.relay_reports, "reverted") == 1
    assert total(world.b.relay_reports, "forwarded") == 0


def test_partial_put_records_failures_resend_only_the_failed_records(aws):
    # GIVEN PutRecords that refuses half of each call, and small packs (many records per call)
    world = TwoRegions(
        delivery=Delivery(rng=random.Random(3), put_fail_rate=0.5), relay_env={"RELAY_PACK_BYTES": "400"}
    )
    oracle = Oracle()
    writer = Writer(world.a.ddb, world.a.table, world.a.tag, oracle)
    for i in range(30):
        writer.put({"pk": {"S": f"order#{i}"}}, {"v": {"N": str(i)}})
    # WHEN Beijing's relay sends them
    world.drain()
    # THEN every change arrived, and each retry carried exactly the records the previous call refused
    assert {k: canonical_item(v) for k, v in world.b.items().items()} == oracle.expected()
    log = world.flaky[0].log
    assert world.put_failures() > 0 and len(log) > 1
    for (_, refused), (sent_next, _) in itertools.pairwise(log):
        if refused:
            assert sent_next == refused
    assert total(world.a.relay_reports, "put_retries") == world.put_failures()
    # AND the stream holds each pack once: nothing was sent twice
    records = _stream_records(world.b)
    assert len(records) == total(world.a.relay_reports, "kinesis_records")


def _stream_records(side) -> list[dict[str, Any]]:
    out = []
    for shard in side.kinesis.list_shards(StreamName=side.kinesis_stream)["Shards"]:
        it = side.kinesis.get_shard_iterator(
            StreamName=side.kinesis_stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        out.extend(side.kinesis.get_records(ShardIterator=it, Limit=10000)["Records"])
    return out


@pytest.mark.parametrize("code", ["UnrecognizedClientException", "ExpiredTokenException"])
def test_rotated_peer_keys_are_read_again_after_an_auth_failure(aws, code):
    # GIVEN Beijing's relay, warm, holding Singapore's keys in its cache (5 minutes)
    world = TwoRegions()
    world.revoked_code = code
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped({"pk": {"S": "before"}}, now_ms(), world.a.tag))
    world.drain()
    # WHEN the key is rotated in SSM and the old one stops working
    old_key = world.b.access_key
    world.put_keys(world.a, "AKIAROTATED000000001")
    world.revoked.add(old_key)
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped({"pk": {"S": "after"}}, now_ms(), world.a.tag))
    world.drain()
    # THEN the relay read the new key at once (no redeploy, no wait for the cache) and delivered
    assert canonical_key({"pk": {"S": "after"}}) in world.b.items()
    assert total(world.a.relay_reports, "credential_refreshes") == 1
    assert world.a.relay_runtime().peer._key_id == "AKIAROTATED000000001"


def _kinesis_record(data: bytes, seq: str = "49600000000000000000000000000000000000000000000000000001") -> dict:
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "p",
            "sequenceNumber": seq,
            "data": base64.b64encode(data).decode(),
            "approximateArrivalTimestamp": time.time(),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"shardId-000000000000:{seq}",
        "eventName": "aws:kinesis:record",
        "awsRegion": "ap-southeast-1",
        "eventSourceARN": "arn:aws:kinesis:ap-southeast-1:123456789012:stream/x",
    }


def test_poison_record_is_parked_whole_and_replayed(aws):
    # GIVEN Singapore's table created with the wrong key type (N, where Beijing's keys are S)
    world = TwoRegions([("pk", "N")])
    tag = world.a.tag
    good = WireChange(
        '{"pk":{"N":"1"}}', {"pk": {"N": "1"}}, "P", {"pk": {"N": "1"}, TS: {"N": "5"}}, Version(5, tag), 0
    )
    bad = WireChange(
        '{"pk":{"S":"x"}}', {"pk": {"S": "x"}}, "P", {"pk": {"S": "x"}, TS: {"N": "5"}}, Version(5, tag), 0
    )
    ok = _kinesis_record(encode(tag, [good]), seq="49600000000000000000000000000000000000000000000000000001")
    refused = _kinesis_record(encode(tag, [bad]), seq="49600000000000000000000000000000000000000000000000000002")
    garbage = _kinesis_record(b"\x01not zlib at all", seq="49600000000000000000000000000000000000000000000000000003")
    # WHEN the applier gets a good pack, a pack its table refuses, and a record that is no pack at all
    response = world.b.applier.invoke({"Records": [ok, refused, garbage]})
    # THEN nothing is retried (it would fail forever), the good change is applied, the others parked whole
    assert response == {"batchItemFailures": []}
    assert canonical_key({"pk": {"N": "1"}}) in world.b.items()
    parked = world.b.parked()
    assert sorted(p["reason"] for p in parked) == ["MalformedRecord", "ValidationException"]
    assert sorted((p["record"] for p in parked), key=json.dumps) == sorted([refused, garbage], key=json.dumps)
    world.b.sqs.purge_queue(QueueUrl=world.b.parking_url)
    for message in parked:
        world.b.sqs.send_message(QueueUrl=world.b.parking_url, MessageBody=json.dumps(message))
    # WHEN the operator fixes the table and replays the parking queue through the applier
    world.reset_tables([("pk", "S")])
    report = replay(world.b.sqs, world.b.parking_url, world.b.applier.invoke)
    # THEN the fixable record is applied, the poison one is parked again (with its reason), none is lost
    assert (report.seen, report.replayed, report.failed) == (2, 2, 0)
    assert canonical_key({"pk": {"S": "x"}}) in world.b.items()
    again = world.b.parked()
    assert [p["reason"] for p in again] == ["MalformedRecord"]
    assert again[0]["record"] == garbage


def test_duplicates_are_counted_not_written_twice(aws):
    # GIVEN Kinesis that delivers every record twice (late)
    world = TwoRegions(delivery=Delivery(rng=random.Random(1), duplicate=1.0))
    writer = Writer(world.a.ddb, world.a.table, world.a.tag, Oracle())
    for i in range(5):
        writer.put({"pk": {"S": f"order#{i}"}}, {"v": {"N": str(i)}})
    writer.delete({"pk": {"S": "order#0"}})
    # WHEN replication drains
    world.drain()
    # THEN each change was applied once and its second delivery counted as a duplicate
    assert world.a.items() == world.b.items()
    applied = total(world.b.applier_reports, "applied")
    assert applied >= 5
    assert total(world.b.applier_reports, "duplicate") >= applied
