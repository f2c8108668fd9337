"""Parked table_replicator records are replayed by re-reading their keys from the source."""

from __future__ import annotations

from ddb_bridge.ops import resync
from harness.faults import Fault, inject
from harness.lambdas import LocalFunction
from harness.streams import StreamPoller
from harness.world import one_way_world, scan_all


def test_parked_keys_are_resynced_from_the_source_after_the_cause_is_fixed(aws):
    # GIVEN a target that rejects two keys as invalid (say, a GSI whose key type differs)
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env())
    fn.invoke({"Records": []})
    client = fn.layer_module("ddb_bridge.core.clients").target_sessions.current().dynamodb
    poison = lambda request: b"poison" in (request.body or b"")  # noqa: E731
    faults = [
        inject(client, op, Fault("ValidationException", times=10**6, when=poison))
        for op in ("BatchWriteItem", "PutItem")
    ]
    for pk in ("ok-1", "poison-1", "poison-2", "ok-2"):
        world.source.put_item(TableName=world.source_table, Item={"pk": {"S": pk}, "v": {"N": "1"}})
    poller = StreamPoller(world.streams, world.stream_arn, fn.invoke)
    poller.drain()
    assert set(scan_all(world.target, world.target_table)) == {'{"pk":{"S":"ok-1"}}', '{"pk":{"S":"ok-2"}}'}
    # AND meanwhile the source moved on: one poisoned key changed, the other was deleted
    world.source.put_item(TableName=world.source_table, Item={"pk": {"S": "poison-1"}, "v": {"N": "2"}})
    world.source.delete_item(TableName=world.source_table, Key={"pk": {"S": "poison-2"}})
    poller.drain()

    # WHEN the operator looks first (dry run), then fixes the cause and resyncs
    dry = resync.resync(
        sqs=world.sqs,
        queue_url=world.parking_url,
        source=world.source,
        source_table=world.source_table,
        invoke=fn.invoke,
        dry_run=True,
    )
    # (poison-1 was parked twice, v1 and v2; poison-2's put was parked, its delete went through)
    assert (dry.seen, dry.skipped, dry.replayed, dry.reasons) == (3, 3, 0, {"ValidationException": 3})
    assert len(world.parked()) == 3  # a dry run changes nothing
    for fault in faults:
        fault.times = fault.injected  # the cause is fixed
    _requeue_now(world)
    report = resync.resync(
        sqs=world.sqs,
        queue_url=world.parking_url,
        source=world.source,
        source_table=world.source_table,
        invoke=fn.invoke,
    )

    # THEN the target equals the source (poison-1 at v2, poison-2 gone) and the parking queue is empty
    assert (report.replayed, report.failed) == (3, 0)
    assert scan_all(world.target, world.target_table) == scan_all(world.source, world.source_table)
    assert world.parked() == []


def test_a_failed_resync_leaves_the_message_parked(aws):
    world = one_way_world()
    world.sqs.send_message(
        QueueUrl=world.parking_url,
        MessageBody='{"source": "table_replicator", "record": {"dynamodb": {"Keys": {"pk": {"S": "a"}}}}}',
    )
    world.sqs.send_message(
        QueueUrl=world.parking_url, MessageBody='{"source": "table_replicator", "record": {"dynamodb": {}}}'
    )
    report = resync.resync(
        sqs=world.sqs,
        queue_url=world.parking_url,
        source=world.source,
        source_table=world.source_table,
        invoke=lambda event: {"batchItemFailures": [{"itemIdentifier": "0"}]},
    )
    assert (report.failed, report.skipped) == (1, 1)  # the unkeyed record is left for a human
    assert len(world.parked()) == 2  # both made visible again at once


def _requeue_now(world) -> None:
    """Make every in-flight message of the parking queue visible again (as after its visibility timeout)."""
    from moto.sqs.models import sqs_backends

    queue = sqs_backends["123456789012"]["us-east-1"].queues[world.parking_url.rsplit("/", 1)[1]]
    for message in queue._messages:
        message.change_visibility(0)
