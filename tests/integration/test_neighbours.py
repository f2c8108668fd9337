"""One failing change never takes its neighbours down, in every writer, against moto over HTTP.

A change that a batch write or a PutRecords call refuses is retried (or parked) on its own; the changes
sent with it are applied. Each test poisons one key with an injected refusal and
compares the tables with what must be there.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import boto3
import pytest

from ddb_bridge.core.access import TargetAccess
from ddb_bridge.core.parking import ParkingLot
from ddb_bridge.loads.backfill.clients import BackfillClients
from ddb_bridge.loads.backfill.copy import copy_segment
from ddb_bridge.loads.settings import BackfillSettings
from ddb_bridge.ops.resync import resync
from harness.bidirectional import TwoRegions
from harness.faults import Fault, UnprocessedWrites, holding, inject
from harness.lambdas import LocalFunction
from harness.load_world import LoadWorld, TableShape, load_world
from harness.streams import StreamPoller
from harness.world import canonical_key, one_way_world, scan_all

TS, ORIGIN = "last_update_timestamp", "last_updater_region"
POISON = "order#poison"


def stamped(pk: str, ts: int, origin: str, note: str = "v") -> dict[str, Any]:
    return {"pk": {"S": pk}, "note": {"S": note}, TS: {"N": str(ts)}, ORIGIN: {"S": origin}}


def keys_of(items: dict[str, Any]) -> set[str]:
    return {json.loads(k)["pk"]["S"] for k in items}


NEIGHBOURS = {f"order#{i}" for i in range(8)}


def _write_batch(world: TwoRegions) -> None:
    ts = int(time.time() * 1000)
    for pk in sorted(NEIGHBOURS | {POISON}):
        world.a.ddb.put_item(TableName=world.a.table, Item=stamped(pk, ts, world.a.tag))
    assert world.a.stream_poller is not None
    world.a.stream_poller.poll_once()  # Beijing's relay: the nine changes cross in one pack


def test_applier_a_change_left_unprocessed_every_round_retries_alone_and_its_neighbours_apply(aws: Any) -> None:
    # GIVEN Singapore's applier, whose BatchWriteItem leaves one key unprocessed (a hot partition), 12 times
    world = TwoRegions()
    local = world.b.applier.layer_module("ddb_bridge.relay.applier").runtime().local
    hot = UnprocessedWrites(local.dynamodb, holding(POISON), times=12)
    local.dynamodb = hot
    # WHEN nine changes arrive in one pack
    _write_batch(world)
    assert world.b.kinesis_poller is not None
    world.b.kinesis_poller.poll_once()
    # THEN the first invocation applied the eight neighbours and reported only the pack for retry
    first = world.b.applier_reports[0]
    assert first.applied == 8 and first.failed == 1
    # AND only that key went back: every round of that invocation (8), then 4 more in Lambda's retry, which wrote it
    assert hot.left_unprocessed == 12
    assert [(r.applied, r.failed) for r in world.b.applier_reports] == [(8, 1), (1, 0)]
    # AND Lambda's retry of the pack applied it once the partition cooled down; both regions are equal
    world.drain()
    assert keys_of(world.b.items()) == NEIGHBOURS | {POISON}
    assert world.a.items() == world.b.items()
    assert world.b.kinesis_poller.stats.sent_to_on_failure == 0


def test_applier_a_change_refused_for_good_parks_its_pack_and_its_neighbours_apply(aws: Any) -> None:
    # GIVEN Singapore's applier, where DynamoDB refuses every write call that holds one change, always
    world = TwoRegions()
    client = world.b.applier.layer_module("ddb_bridge.relay.applier").runtime().local.dynamodb
    refuse = inject(
        client, "BatchWriteItem", Fault("ValidationException", times=10**9, when=lambda r: POISON.encode() in r.body)
    )
    # WHEN nine changes arrive in one pack
    _write_batch(world)
    assert world.b.kinesis_poller is not None
    world.b.kinesis_poller.poll_once()
    # THEN nothing is retried, the neighbours are applied (the call was halved until only that change was
    # refused), and the pack is parked whole with the reason
    assert keys_of(world.b.items()) == NEIGHBOURS
    (parked,) = world.b.parked()
    assert parked["reason"] == "ValidationException" and parked["source"] == "relay_applier"
    assert world.b.applier_reports[0].failed == 0
    assert 1 < refuse.injected <= 5  # 9 -> 4/5 -> 2/3 -> 1/2 -> 1: a handful of calls, not one per change


def test_replicator_a_batch_write_refused_for_one_item_parks_only_that_item(aws: Any) -> None:
    # GIVEN a target that refuses one item (as a target with another index schema would), in any request
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env())
    fn.invoke({"Records": []})
    client = fn.layer_module("ddb_bridge.core.clients").target_sessions.current().dynamodb
    refuse = Fault("ValidationException", times=10**9, when=lambda request: POISON.encode() in request.body)
    inject(client, "BatchWriteItem", refuse)
    inject(client, "PutItem", refuse)
    for pk in sorted(NEIGHBOURS | {POISON}):
        world.source.put_item(TableName=world.source_table, Item={"pk": {"S": pk}})
    # WHEN the stream drains
    poller = StreamPoller(world.streams, world.stream_arn, fn.invoke, batch_size=100)
    poller.drain()
    # THEN only that item is parked; its neighbours in the same BatchWriteItem are written
    assert keys_of(scan_all(world.target, world.target_table)) == NEIGHBOURS
    (parked,) = world.parked()
    assert parked["reason"] == "ValidationException" and parked["record"]["dynamodb"]["Keys"] == {"pk": {"S": POISON}}
    assert poller.stats.retries == 0


def test_relay_a_put_records_call_refused_for_one_record_parks_only_that_record(aws: Any) -> None:
    # GIVEN Beijing's relay sending one change per record, and a peer stream that refuses one record's call
    world = TwoRegions(relay_env={"RELAY_PACK_BYTES": "1", "RELAY_COMPRESS": "false"})
    runtime = world.a.relay_runtime()
    original = runtime.peer.client_factory

    def carries_poison(request: Any) -> bool:
        records = json.loads(request.body)["Records"]
        return any(POISON.encode() in base64.b64decode(r["Data"]) for r in records)

    def factory(session: Any, region: str, config: Any) -> Any:
        client = original(session, region, config)
        inject(client, "PutRecords", Fault("ValidationException", times=10**9, when=carries_poison))
        return client

    runtime.peer.client_factory = factory
    runtime.peer.refresh()
    # WHEN nine changes are relayed in one PutRecords call
    _write_batch(world)
    world.drain()
    # THEN the call was halved until only the poisoned record was refused: it is parked, the rest crossed
    (parked,) = world.a.parked()
    assert parked["reason"] == "ValidationException" and parked["record"]["dynamodb"]["Keys"] == {"pk": {"S": POISON}}
    assert keys_of(world.b.items()) == NEIGHBOURS
    assert sum(r.failed for r in world.a.relay_reports) == 0


class RefusingTarget(TargetAccess):
    """The target side's access, whose DynamoDB client refuses every request that carries one key."""

    def client(self, service: str, *, pool: int = 10) -> Any:
        client = super().client(service, pool=pool)
        refuse = Fault("ValidationException", times=10**9, when=lambda request: POISON.encode() in request.body)
        for operation in ("BatchWriteItem", "PutItem", "TransactWriteItems"):
            inject(client, operation, refuse)
        return client


@pytest.mark.parametrize("write_mode", ["overwrite", "live"])
def test_backfill_an_item_the_target_refuses_is_parked_and_the_page_is_copied(aws: Any, write_mode: str) -> None:
    # GIVEN a source of nine items and a target that refuses one of them
    world: LoadWorld = load_world(TableShape(key_schema=[("pk", "S")]))
    world.create_target_table()
    world.create_backfill_tables()
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="backfill-parking")["QueueUrl"]
    secret = {"pk": {"S": POISON}, "card": {"S": "SECRET-4111-1111"}}
    world.seed([{"pk": {"S": pk}, "card": {"S": "x"}} for pk in sorted(NEIGHBOURS)] + [secret])
    settings = BackfillSettings.from_env(world.backfill_env(PARKING_QUEUE_URL=queue))
    clients = BackfillClients(
        source=boto3.client("dynamodb", region_name="us-east-1"),
        target=RefusingTarget(settings.target, None),
        sleep=lambda s: None,
        parking=ParkingLot(queue, source="backfill", region="us-east-1"),
    )
    state = {"backfillId": f"park-{write_mode}", "segment": 0, "totalSegments": 1, "writeMode": write_mode}
    # WHEN the segment is copied
    out = copy_segment(state, settings, clients, owner="test", budget_seconds=60)
    # THEN the segment finished, the neighbours are copied, and the refused item is parked whole with its key
    assert out["done"] and out["copied"] == len(NEIGHBOURS) and out["parked"] == 1
    assert keys_of(scan_all(world.target, world.target_table)) == NEIGHBOURS
    (message,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    body = json.loads(message["Body"])
    assert body["source"] == "backfill" and body["reason"] == "ValidationException"
    assert body["record"]["dynamodb"]["Keys"] == {"pk": {"S": POISON}}
    assert body["record"]["dynamodb"]["NewImage"]["card"] == {"S": "SECRET-4111-1111"}  # the whole item, parked
    assert POISON in body["error"] and "SECRET" not in body["error"]  # the key, never a value
    assert canonical_key({"pk": {"S": POISON}}) not in scan_all(world.target, world.target_table)
    # AND once the target takes it, the resync command re-reads the parked key and the replicator writes it
    replicator = LocalFunction("table_replicator", world.replicator_env())
    report = resync(
        sqs=sqs, queue_url=queue, source=world.source, source_table=world.source_table, invoke=replicator.invoke
    )
    assert report.replayed == 1
    assert scan_all(world.target, world.target_table) == scan_all(world.source, world.source_table)
