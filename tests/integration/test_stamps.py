"""Version stamps as real clients write them, against moto over HTTP (docs/design.md#version-stamps).

The public China <-> Global sample stamps `Decimal(time.time())`: seconds with a long fraction. Such an
item used to count as unstamped, so its delete demanded `attribute_not_exists(ts)` of an item that has
a `ts`: refused on every retry, wedging the batch. Here every writer (the one-way replicator in lww
mode, both bidirectional functions) meets every stamp form, and the tables are compared with an oracle.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddb_bridge.core.changes import Change, Op
from ddb_bridge.core.keys import key_id
from ddb_bridge.core.settings import VersionAttrs
from ddb_bridge.core.versions import Version, beats_stored, version_of, wins
from ddb_bridge.table.writer import Outcome, TableWriter
from harness.bidirectional import TwoRegions
from harness.lambdas import LocalFunction
from harness.lww import Oracle, SampleWriter, canonical_item, micros_of_seconds
from harness.streams import StreamPoller, sqs_on_failure
from harness.world import canonical_key, create_table, one_way_world, scan_all

A = VersionAttrs()
TS, ORIGIN = A.ts, A.origin
NOW_S = 1_796_180_270  # an instant (seconds); forms below are written around it


# ---- the fast path never disagrees with the decision in code --------------------------------------------------
def _stamp_forms(instant_us: int) -> st.SearchStrategy[dict[str, Any] | None]:
    """Every way a stored item's stamp may look, at or around one instant."""
    seconds = Decimal(instant_us) / 1_000_000
    return st.one_of(
        st.none(),
        st.just({"N": str(Decimal(float(seconds)))}),  # the sample: Decimal(time.time()), the float's expansion
        st.just({"N": str(seconds)}),
        st.just({"N": str(instant_us // 1000)}),  # integer milliseconds
        st.just({"N": str(Decimal(instant_us) / 1000)}),  # fractional milliseconds
        st.just({"S": str(instant_us // 1000)}),  # numeric text
        st.just({"S": "yesterday"}),
        st.just({"N": "-1"}),
        st.just({"N": "1" + "0" * 19}),  # not a time in any unit
    )


@st.composite
def _cases(draw: st.DrawFn) -> tuple[dict[str, Any] | None, dict[str, Any] | None, Version, str]:
    base = NOW_S * 1_000_000 + draw(st.integers(0, 999_999))
    stored_ts = draw(_stamp_forms(base + draw(st.sampled_from([0, 0, 1, -1, 999, -1000, 1000, 5_000_000]))))
    stored_origin = draw(st.one_of(st.none(), st.sampled_from([{"S": "a"}, {"S": "b"}, {"N": "1"}])))
    change = Version(base + draw(st.sampled_from([0, 1, -1, 1000])), draw(st.sampled_from(["a", "b"])))
    op = draw(st.sampled_from(["put", "delete"]))
    return stored_ts, stored_origin, change, op


@pytest.fixture(scope="module")
def stamp_table(local_aws: Any) -> str:
    local_aws.reset()
    name = f"stamps-{uuid.uuid4().hex[:6]}"
    create_table(boto3.client("dynamodb"), name, [("pk", "S")])
    return name


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_cases())
def test_the_fast_path_only_passes_where_code_agrees_and_the_decision_is_taken_on_normalised_versions(
    stamp_table: str, case: tuple[dict[str, Any] | None, dict[str, Any] | None, Version, str]
) -> None:
    stored_ts, stored_origin, change_version, op = case
    ddb = boto3.client("dynamodb")
    key = {"pk": {"S": "k"}}
    stored = {**key, "v": {"S": "stored"}}
    if stored_ts is not None:
        stored[TS] = stored_ts
    if stored_origin is not None:
        stored[ORIGIN] = stored_origin
    code_says = wins(change_version, version_of(stored, A))
    # GIVEN an item stamped in any form
    ddb.put_item(TableName=stamp_table, Item=stored)
    # WHEN a write is conditioned on the fast path
    raw_ms = str(Decimal(change_version.ts) / 1000)  # the change's own stamp, in fractional milliseconds
    change_item = {**key, "v": {"S": "change"}, TS: {"N": raw_ms}, ORIGIN: {"S": change_version.origin}}
    assert version_of(change_item, A) == change_version
    try:
        ddb.put_item(TableName=stamp_table, Item=change_item, **beats_stored(change_version, A).kwargs())
        passed = True
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException"
        passed = False
    # THEN it never passes where code says the stored item wins
    assert not passed or code_says
    # AND the writer (fast path, then the decision in code, then the exact guard) ends where code says
    ddb.put_item(TableName=stamp_table, Item=stored)
    writer = TableWriter(ddb, stamp_table, mode="lww", attrs=A, sleep=lambda s: None)
    wire = {"pk": {"S": "k"}}
    change = Change(
        key_id(wire),
        key,
        Op.PUT if op == "put" else Op.DELETE,
        change_item if op == "put" else None,
        change_version,
        "1",
        0,
        False,
        {},
    )
    result = writer.apply([change])[change.key_id]
    after = ddb.get_item(TableName=stamp_table, Key=key, ConsistentRead=True).get("Item")
    assert result is (Outcome.APPLIED if code_says else Outcome.STALE)
    if code_says:
        assert after == (change_item if op == "put" else None)
    else:
        assert after == stored


# ---- one-way lww: the sample's stamps against a target holding every other form -------------------------------
@pytest.mark.parametrize("tombstones", [False, True], ids=["single-writes", "transactions"])
def test_lww_replicator_orders_sample_stamps_against_every_form_in_the_target(aws: Any, tombstones: bool) -> None:
    world = one_way_world()
    env = world.replicator_env(REPLICATION_MODE="lww")
    if tombstones:
        world.target.create_table(
            TableName="tombstones",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        env["TOMBSTONE_TABLE_NAME"] = "tombstones"
    fn = LocalFunction("table_replicator", env)
    now = Decimal(time.time())
    ms = int(now * 1000)

    def stamped(pk: str, note: str, ts: dict[str, Any] | None, origin: str = "us-east-1") -> dict[str, Any]:
        item = {"pk": {"S": pk}, "note": {"S": note}, ORIGIN: {"S": origin}}
        if ts is not None:
            item[TS] = ts
        return item

    # GIVEN a target that already holds copies stamped in other forms
    target_items = [
        stamped("older-ms", "target", {"N": str(ms - 5000)}),
        stamped("newer-ms", "target", {"N": str(ms + 60_000)}),
        stamped("unreadable", "target", {"S": "yesterday"}),
        stamped("older-text", "target", {"S": str(ms - 5000)}),
        stamped("deleted-later", "target", {"N": str(ms - 9000)}),
        stamped("newer-seconds", "target", {"N": str(now + 60)}),
    ]
    for item in target_items:
        world.target.put_item(TableName=world.target_table, Item=item)
    # WHEN the source writes the same keys as the sample does (seconds as a Decimal), then deletes one
    for pk in ("older-ms", "newer-ms", "unreadable", "older-text", "deleted-later", "newer-seconds", "fresh"):
        world.source.put_item(
            TableName=world.source_table, Item=stamped(pk, "source", {"N": str(Decimal(time.time()))})
        )
    world.source.delete_item(TableName=world.source_table, Key={"pk": {"S": "deleted-later"}})
    poller = StreamPoller(world.streams, world.stream_arn, fn.invoke, batch_size=4, max_retries=2)
    poller.on_failure = sqs_on_failure(world.sqs, world.on_failure_url)
    poller.drain()
    # THEN each key ends as last-writer-wins says, whatever form each side stamped in; nothing wedged
    target = {k: v["note"]["S"] for k, v in scan_all(world.target, world.target_table).items()}
    expected = {
        "older-ms": "source",
        "newer-ms": "target",
        "unreadable": "source",  # an unreadable stamp is unstamped: older than any version
        "older-text": "source",
        "newer-seconds": "target",
        "fresh": "source",
    }
    assert target == {canonical_key({"pk": {"S": k}}): v for k, v in expected.items()}
    assert poller.stats.retries == 0 and poller.stats.sent_to_on_failure == 0
    assert world.parked() == []


# ---- bidirectional: the sample's writers in both regions ---------------------------------------------------------
def _settle(world: TwoRegions, oracle: Oracle) -> None:
    world.drain()
    expected = oracle.expected()
    for side in world.sides:
        assert {k: canonical_item(v) for k, v in side.data().items()} == expected, side.region
        assert side.parked() == [], side.region
        assert side.kinesis_poller is not None and side.kinesis_poller.stats.sent_to_on_failure == 0
        assert side.stream_poller is not None and side.stream_poller.stats.sent_to_on_failure == 0


def _key(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"order#{i}"}}


def _body(note: str) -> dict[str, Any]:
    return {"note": {"S": note}, "blob": {"B": b"\x00\xff"}, "total": {"N": "12.50"}}


def test_sample_stamps_replicate_both_ways_with_deletes_conflicts_ties_and_recreations(aws: Any) -> None:
    world = TwoRegions()
    oracle = Oracle()
    a = SampleWriter(world.a.ddb, world.a.table, world.a.tag, oracle)
    b = SampleWriter(world.b.ddb, world.b.table, world.b.tag, oracle)
    # puts and updates in both regions
    for i in range(8):
        a.put(_key(i), _body("beijing"))
        b.put(_key(100 + i), _body("singapore"))
    for i in range(3):
        a.update(_key(i), {"status": {"S": "PAID"}})
        b.update(_key(100 + i), {"status": {"S": "SHIPPED"}})
    _settle(world, oracle)
    # deletes: of the peer's items and of one's own (the wedge: a delete of a fractional-seconds item)
    time.sleep(0.01)
    for pk in (100, 101, 0):
        assert a.delete(_key(pk)) is not None
    assert b.delete(_key(1)) is not None
    _settle(world, oracle)
    # conflicts: both regions write the same keys before either change crosses; the later stamp wins
    time.sleep(0.01)
    for i in (2, 3):
        a.put(_key(i), _body("beijing, first"))
        time.sleep(0.002)
        b.put(_key(i), _body("singapore, later"))
    for i in (4, 5):
        b.put(_key(i), _body("singapore, first"))
        time.sleep(0.002)
        a.put(_key(i), _body("beijing, later"))
    # a tie to the last digit: the origin decides, the same way in both regions
    stamp = Decimal(time.time())
    a.put(_key(6), _body("beijing, tie"), stamp=stamp)
    b.put(_key(6), _body("singapore, tie"), stamp=stamp)
    _settle(world, oracle)
    assert canonical_item(world.b.items()[canonical_key(_key(6))])["note"] == {"S": "beijing, tie"}
    # re-creations after deletes, in the region that deleted and in the other one
    time.sleep(0.01)
    a.delete(_key(7))
    time.sleep(0.01)
    a.put(_key(7), _body("beijing, re-created"))
    b.put(_key(100), _body("singapore, re-created"))
    _settle(world, oracle)
    # other forms beside the sample's: an unreadable stamp (its delete must reach the peer's copy, whose stamp
    # cannot be read either); a milliseconds stamp that beats a seconds one
    time.sleep(0.01)
    a.put_raw(_key(200), {**_body("legacy"), TS: {"S": "yesterday"}}, None)
    _settle(world, oracle)
    time.sleep(0.01)
    a.delete(_key(200))
    later_ms = int(time.time() * 1000) + 5
    b.put_raw(
        _key(3),
        {**_body("singapore, milliseconds"), TS: {"N": str(later_ms)}, ORIGIN: {"S": world.b.tag}},
        Version(later_ms * 1000, world.b.tag),
    )
    _settle(world, oracle)
    # every change applied: no write was refused on every retry
    for side in world.sides:
        assert sum(r.failed for r in side.applier_reports) == 0
        assert sum(r.failed for r in side.relay_reports) == 0
    assert version_of({TS: {"N": str(stamp)}}, A) == Version(micros_of_seconds(stamp), "")
