"""table_replicator records which stream records it finished with, and drain's stream check reads exactly that."""

from __future__ import annotations

import time
from pathlib import Path

from cfnlint.decode import decode

from ddb_bridge.ops.drain import StreamCheck
from ddb_bridge.table.progress import BatchProgress, read_progress
from harness.faults import Fault, inject
from harness.lambdas import LocalFunction
from harness.streams import StreamPoller
from harness.world import one_way_world, scan_all

ROOT = Path(__file__).resolve().parents[2]


def create_progress_table(client, name: str) -> str:
    """The table templates/progress.yaml deploys (its own properties)."""
    template, problems = decode(str(ROOT / "templates" / "progress.yaml"))
    assert not problems
    props = template["Resources"]["ReplicatorProgressTable"]["Properties"]
    client.create_table(
        TableName=name,
        KeySchema=props["KeySchema"],
        AttributeDefinitions=props["AttributeDefinitions"],
        BillingMode=props["BillingMode"],
    )
    return name


def stream_seqs(world) -> list[int]:
    shard = world.streams.describe_stream(StreamArn=world.stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    it = world.streams.get_shard_iterator(StreamArn=world.stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    return [
        int(r["dynamodb"]["SequenceNumber"])
        for r in world.streams.get_records(ShardIterator=it["ShardIterator"])["Records"]
    ]


def test_the_replicator_records_every_record_it_finished_with_and_none_it_must_retry(aws):
    # GIVEN a replicator with a progress table, and a target that rejects one key for good and throttles another once
    world = one_way_world()
    table = create_progress_table(world.source, f"{world.source_table}-progress")
    fn = LocalFunction("table_replicator", world.replicator_env(PROGRESS_TABLE_NAME=table, TARGET_MAX_ATTEMPTS="1"))
    fn.invoke({"Records": []})
    client = fn.layer_module("ddb_bridge.core.clients").target_sessions.current().dynamodb
    throttles = []
    for op in ("BatchWriteItem", "PutItem"):
        inject(client, op, Fault("ValidationException", times=10**6, when=lambda r: b"poison" in (r.body or b"")))
        throttles.append(
            inject(client, op, Fault("ThrottlingException", times=10**6, when=lambda r: b"slow" in (r.body or b"")))
        )
    for pk in ("ok-1", "poison", "slow", "ok-2"):
        world.source.put_item(TableName=world.source_table, Item={"pk": {"S": pk}})
    responses: list[dict] = []

    def invoke(event):
        responses.append(fn.invoke(event))
        first_items.extend(read_progress(world.source, table, world.stream_arn))
        for fault in throttles:  # the throttling stops after the first invocation
            fault.times = fault.injected
        return responses[-1]

    # WHEN the stream is delivered (the first invocation meets the throttling, Lambda retries the rest)
    first_items: list = []
    StreamPoller(world.streams, world.stream_arn, invoke, batch_size=10, max_retries=5).drain()

    # THEN the first invocation recorded every record except those reported for retry (the parked one counts)
    seqs = stream_seqs(world)
    retried = {int(f["itemIdentifier"]) for f in responses[0]["batchItemFailures"]}
    assert retried  # the throttled key was reported
    assert len(responses) >= 2 and first_items
    assert first_items[0].seqs == sorted(set(seqs) - retried)
    # AND after the retry every record of the stream is recorded, and the target is right
    recorded = set().union(*(set(i.seqs) for i in read_progress(world.source, table, world.stream_arn)))
    assert recorded == set(seqs)
    assert set(scan_all(world.target, world.target_table)) == {
        '{"pk":{"S":"ok-1"}}',
        '{"pk":{"S":"ok-2"}}',
        '{"pk":{"S":"slow"}}',
    }


def test_a_lost_progress_write_never_fails_the_batch_and_drain_keeps_waiting(aws):
    # GIVEN a replicator whose progress table does not exist
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env(PROGRESS_TABLE_NAME="no-such-progress-table"))
    for i in range(5):
        world.source.put_item(TableName=world.source_table, Item={"pk": {"S": f"k{i}"}})
    # WHEN the stream is delivered
    responses: list[dict] = []
    StreamPoller(world.streams, world.stream_arn, lambda e: responses.append(fn.invoke(e)) or responses[-1]).drain()
    # THEN replication went on (no failure reported, target equals source) ...
    assert all(r["batchItemFailures"] == [] for r in responses)
    assert scan_all(world.target, world.target_table) == scan_all(world.source, world.source_table)
    # ... and drain's check cannot confirm those records: it waits rather than passing early
    table = create_progress_table(world.source, f"{world.source_table}-progress")
    state = StreamCheck(world.streams, world.source, table, world.stream_arn, int(time.time() * 1000)).measure()
    assert state.seen == 5 and len(state.pending) == 5


def test_drain_ticks_off_records_not_a_watermark_so_a_lagging_lane_is_seen(aws):
    # GIVEN six records, and two concurrent lanes of one shard (ParallelizationFactor 2) that handled them so far:
    # lane A the 1st, 3rd and 5th, lane B only the 2nd. A "last sequence number applied" would say 5 of 6 are done.
    world = one_way_world()
    table = create_progress_table(world.source, f"{world.source_table}-progress")
    for i in range(6):
        world.source.put_item(TableName=world.source_table, Item={"pk": {"S": f"k{i}"}})
    s = stream_seqs(world)
    now = int(time.time() * 1000)
    for lane in ([s[0], s[2], s[4]], [s[1]]):
        world.source.put_item(TableName=table, Item=BatchProgress(world.stream_arn, lane, now).item(now))
    check = StreamCheck(world.streams, world.source, table, world.stream_arn, now, settle_s=0)

    # WHEN drain looks
    state = check.poll()
    # THEN the 4th and the 6th record are still pending: lane B is behind lane A
    assert sorted(state.pending) == [s[3], s[5]] and not state.done
    # AND once lane B records them, the stream is drained
    world.source.put_item(TableName=table, Item=BatchProgress(world.stream_arn, [s[3], s[5]], now).item(now + 1))
    assert check.poll().done
