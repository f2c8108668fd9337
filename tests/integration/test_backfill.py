"""statemachine/backfill.asl.json executed by moto's Step Functions engine, against moto over HTTP.

A backfill beside live replication (updates, deletes and re-creates during the scan) ends with
target == source; a backfill stopped mid-segment and started again copies each item exactly once (the
target's own stream shows one INSERT per item and no second write); throttling and UnprocessedItems are
absorbed; bad input and bad tables fail with a message; progress shows per segment.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from harness import lambda_bridge
from harness.lambda_bridge import LambdaBridge
from harness.load_world import LoadWorld, TableShape, load_world
from harness.streams import StreamPoller
from harness.workflows import ReplicationWatcher, run, start, states_entered, wait
from harness.world import scan_all

SCHEMA = [("pk", "S"), ("sk", "N")]


@pytest.fixture
def bridge(aws: Any) -> Iterator[LambdaBridge]:
    bridge = lambda_bridge.install()
    yield bridge
    bridge.hooks.clear()


def item(i: int, *, version: int | None = None, note: str = "seed") -> dict[str, Any]:
    out = {
        "pk": {"S": f"user#{i % 37}"},
        "sk": {"N": str(i)},
        "note": {"S": note},
        "blob": {"B": bytes([i % 256]) * 8},
        "nested": {"M": {"b": {"B": b"\x00\xff"}, "n": {"N": "9" * 38}}},
    }
    if version is not None:
        out["last_update_timestamp"] = {"N": str(version)}
        out["last_updater_region"] = {"S": "us-east-1"}
    return out


def key(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"user#{i % 37}"}, "sk": {"N": str(i)}}


def stream_events(world: LoadWorld, table: str) -> list[str]:
    """INSERT/MODIFY/REMOVE of every record in a target-side table's stream."""
    streams = world.target_session.client("dynamodbstreams", region_name=world.target_region)
    arn = world.target.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    events: list[str] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        while it:
            page = streams.get_records(ShardIterator=it, Limit=1000)
            events.extend(r["eventName"] for r in page["Records"])
            it = page.get("NextShardIterator") if page["Records"] else None
    return events


# ---- beside live replication -------------------------------------------------------------------------------
class LiveTraffic:
    """Updates, deletes and re-creates on the source while the backfill runs (versions stamped in lww mode)."""

    def __init__(self, world: LoadWorld, keys: int, *, stamped: bool) -> None:
        self.world = world
        self.keys = keys
        self.stamped = stamped
        self.ops = {"update": 0, "delete": 0, "create": 0}
        self._stop = threading.Event()
        self._rng = random.Random(7)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        source = boto3.client("dynamodb", region_name="us-east-1")
        while not self._stop.is_set():
            i = self._rng.randrange(self.keys + 20)
            op = self._rng.choice(["update", "update", "delete", "create"])
            version = int(time.time() * 1000) if self.stamped else None
            if op == "delete":
                source.delete_item(TableName=self.world.source_table, Key=key(i))
            else:
                source.put_item(TableName=self.world.source_table, Item=item(i, version=version, note=f"live {op}"))
            self.ops[op] += 1
            time.sleep(0.004)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.parametrize("mode", ["ordered", "lww"])
def test_backfill_beside_live_replication_ends_with_target_equal_to_source(bridge: LambdaBridge, mode: str) -> None:
    # GIVEN a source table with items written before live replication started, and an empty target
    world = load_world(TableShape(key_schema=SCHEMA))
    stamped = mode == "lww"
    world.seed([item(i, version=1_000 + i if stamped else None) for i in range(120)])
    world.create_target_table()
    world.create_backfill_tables()
    replicator = world.deploy_replicator(REPLICATION_MODE=mode, TOMBSTONE_TABLE_NAME=world.tombstone_table)
    poller = StreamPoller(world.streams, world.stream_arn, lambda event: {"batchItemFailures": []})
    poller.drain()  # replication starts now: the seed's records are behind it (as with LATEST, or expired records)
    poller.handler = replicator.invoke
    live = ReplicationWatcher(world.lambda_, world.create_mapping(enabled=True), poller)
    machine = world.backfill_machine(REPLICATION_MODE=mode)

    # WHEN the backfill runs while the source keeps changing (and live replication applies the changes)
    traffic = LiveTraffic(world, 120, stamped=stamped)
    result = run(
        machine,
        {"writeMode": "live", "totalSegments": 3, "pageSize": 10, "callSeconds": 1, "maxWriteUnitsPerSecond": 100},
        timeout_s=90,
    )
    traffic.stop()
    live.drain()

    # THEN target == source: no newer live write overwritten, no live delete resurrected, nothing missed
    assert result["status"] == "SUCCEEDED", result.get("cause")
    summary = result["output"]
    assert summary["segmentsDone"] == 3
    assert summary["copied"] + summary["skipped"] == summary["scanned"]
    assert summary["skipped"] > 0  # some keys were already owned by live replication
    assert sum(traffic.ops.values()) > 30 and traffic.ops["delete"] > 3  # the source really changed meanwhile
    assert scan_all(world.target, world.target_table) == scan_all(world.source, world.source_table)


# ---- resume ------------------------------------------------------------------------------------------------
def _progress(world: LoadWorld, backfill_id: str) -> list[dict[str, Any]]:
    items = world.source.scan(TableName=world.progress_table, ConsistentRead=True)["Items"]
    return [i for i in items if i["pk"]["S"].startswith(f"{backfill_id}#") and not i["pk"]["S"].endswith("#plan")]


def test_backfill_stopped_mid_segment_resumes_and_copies_each_item_exactly_once(bridge: LambdaBridge) -> None:
    # GIVEN a target whose own stream records every write (a second write of an item would show as MODIFY)
    world = load_world(TableShape(key_schema=SCHEMA, stream_view=None))
    world.seed([item(i) for i in range(300)])
    world.create_target_table(stream=True)
    world.create_backfill_tables()
    machine = world.backfill_machine()
    backfill = {
        "backfillId": "resume-me",
        "writeMode": "overwrite",
        "totalSegments": 2,
        "pageSize": 10,
        "callSeconds": 1,
        "maxWriteUnitsPerSecond": 200,
    }

    # WHEN the first execution is stopped while segments are half copied
    first = start(machine, backfill)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        progress = _progress(world, "resume-me")
        if any(int(p.get("copied", {"N": "0"})["N"]) >= 30 for p in progress):
            break
        time.sleep(0.05)
    sfn = boto3.client("stepfunctions")
    sfn.stop_execution(executionArn=first, cause="test: stop mid-segment")
    stopped = wait(first)
    mid = {p["pk"]["S"]: (int(p["copied"]["N"]), p["done"]["BOOL"]) for p in _progress(world, "resume-me")}
    assert stopped["status"] == "ABORTED"
    assert any(0 < copied < 300 and not done for copied, done in mid.values()), mid

    # AND a second execution with the same backfillId resumes from the checkpoints
    second = run(machine, backfill, timeout_s=60)
    bridge.wait_idle()

    # THEN everything was copied, each item exactly once
    assert second["status"] == "SUCCEEDED", second.get("cause")
    assert scan_all(world.target, world.target_table) == scan_all(world.source, world.source_table)
    events = stream_events(world, world.target_table)
    assert events.count("INSERT") == 300
    assert events.count("MODIFY") == 0
    summary = second["output"]
    assert summary["segmentsDone"] == 2 and summary["copied"] == 300  # the checkpoints carry the first run's count
    assert sum(c for c, _ in mid.values()) > 0


def test_backfill_with_a_finished_backfill_id_copies_nothing_again(bridge: LambdaBridge) -> None:
    world = load_world(TableShape(key_schema=SCHEMA, stream_view=None))
    world.seed([item(i) for i in range(40)])
    world.create_target_table(stream=True)
    world.create_backfill_tables()
    machine = world.backfill_machine()
    assert run(machine, {"backfillId": "once", "writeMode": "overwrite", "totalSegments": 2})["status"] == "SUCCEEDED"
    again = run(machine, {"backfillId": "once"})  # resumes with the segments and write mode it was started with
    assert again["status"] == "SUCCEEDED", again.get("cause")
    assert again["output"]["writeMode"] == "overwrite" and again["output"]["segments"] == 2
    assert again["output"]["copied"] == 40 and again["output"]["calls"] == 2
    assert stream_events(world, world.target_table).count("INSERT") == 40
    assert stream_events(world, world.target_table).count("MODIFY") == 0


# ---- throttling --------------------------------------------------------------------------------------------
class HalfUnprocessed:
    """Wraps a DynamoDB client: the first `throttled` BatchWriteItem calls fail with a throttling error, the
    next `times` calls write only half of their items and return the rest as UnprocessedItems."""

    def __init__(self, client: Any, times: int, *, throttled: int = 0) -> None:
        self._client = client
        self.left = times
        self.throttled = throttled
        self.calls = 0
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, RequestItems: dict[str, list[Any]]) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
            fail = self.throttled > 0
            self.throttled -= 1 if fail else 0
            throttle = not fail and self.left > 0
            self.left -= 1 if throttle else 0
        if fail:
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "injected"}}
            raise ClientError(error, "BatchWriteItem")
        if not throttle:
            return dict(self._client.batch_write_item(RequestItems=RequestItems))
        written = {t: r[: len(r) // 2] for t, r in RequestItems.items()}
        rest = {t: r[len(r) // 2 :] for t, r in RequestItems.items() if r[len(r) // 2 :]}
        if any(written.values()):
            self._client.batch_write_item(RequestItems={t: r for t, r in written.items() if r})
        return {"UnprocessedItems": rest}


def test_backfill_absorbs_throttling_and_unprocessed_items(bridge: LambdaBridge) -> None:
    # GIVEN a target that throttles whole requests, and answers UnprocessedItems for half of others
    world = load_world(TableShape(key_schema=SCHEMA, stream_view=None))
    world.seed([item(i) for i in range(200)])
    world.create_target_table(stream=True)
    world.create_backfill_tables()
    machine = world.backfill_machine()
    unprocessed = HalfUnprocessed(None, 10, throttled=6)
    sleeps: list[float] = []

    def configure(sandbox: Any) -> None:
        rt = sandbox.layer_module("ddb_bridge.loads.backfill.handler").runtime()
        make_client = rt.clients.target.client
        rt.clients.sleep = sleeps.append

        def client(service: str, **kwargs: Any) -> Any:
            unprocessed._client = make_client(service, **kwargs)
            return unprocessed

        rt.clients.target.client = client

    bridge.configure("backfill", configure)

    # WHEN the backfill runs
    result = run(machine, {"writeMode": "overwrite", "totalSegments": 1, "pageSize": 50}, timeout_s=60)

    # THEN every item is there exactly once, after backoffs with jitter
    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert scan_all(world.target, world.target_table) == scan_all(world.source, world.source_table)
    assert stream_events(world, world.target_table).count("INSERT") == 200
    assert stream_events(world, world.target_table).count("MODIFY") == 0
    assert unprocessed.throttled == 0 and unprocessed.left <= 0
    assert sleeps and all(0 <= s <= 5.0 for s in sleeps)
    assert len(set(sleeps)) > 1  # jittered


def test_backfill_retries_a_call_whose_items_stay_unprocessed_without_losing_them(bridge: LambdaBridge) -> None:
    # GIVEN a target that leaves items unprocessed for longer than one call keeps trying
    world = load_world(TableShape(key_schema=SCHEMA, stream_view=None))
    world.seed([item(i) for i in range(60)])
    world.create_target_table(stream=True)
    world.create_backfill_tables()
    machine = world.backfill_machine()
    throttle = HalfUnprocessed(None, 0)

    def configure(sandbox: Any) -> None:
        rt = sandbox.layer_module("ddb_bridge.loads.backfill.handler").runtime()
        make_client = rt.clients.target.client
        rt.clients.sleep = lambda s: None

        def client(service: str, **kwargs: Any) -> Any:
            throttle._client = make_client(service, **kwargs)
            return throttle

        rt.clients.target.client = client

    bridge.configure("backfill", configure)
    throttle.left = 60  # more than the ~48 BatchWriteItem rounds one call makes before it gives up

    result = run(machine, {"writeMode": "overwrite", "totalSegments": 1, "pageSize": 30}, timeout_s=60)

    # THEN the failed call was retried by the workflow from its checkpoint, and nothing was lost or doubled
    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert bridge.errors["backfill"] >= 1
    assert scan_all(world.target, world.target_table) == scan_all(world.source, world.source_table)
    assert stream_events(world, world.target_table).count("INSERT") == 60


# ---- bad input, bad tables ---------------------------------------------------------------------------------
BAD: dict[str, tuple[dict[str, Any], dict[str, str], str]] = {
    "write mode": ({"writeMode": "fast"}, {}, "writeMode must be 'live'"),
    "segments": ({"totalSegments": 0}, {}, "totalSegments must be from 1 to 1000"),
    "percent": ({"throughputPercent": 150}, {}, "throughputPercent must be from 1 to 100"),
    "typo": ({"pagesize": 10}, {}, "unknown field 'pagesize' (did you mean pageSize?)"),
    "backfill id": ({"backfillId": "no spaces please"}, {}, "backfillId must be 1-80 of"),
    "consistent": ({"consistentRead": "yes"}, {}, "consistentRead must be true or false"),
    "no target": ({}, {"TARGET_TABLE_NAME": "missing-table"}, "the target table missing-table does not exist"),
    "no tombstones": ({"writeMode": "live"}, {"TOMBSTONE_TABLE_NAME": ""}, "writeMode 'live' needs the tombstone"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_backfill_rejects_bad_input_and_bad_tables(bridge: LambdaBridge, case: str) -> None:
    execution_input, env, expected = BAD[case]
    world = load_world(TableShape(stream_view=None, pitr=False))
    world.seed([{"pk": {"S": "k"}}])
    world.create_target_table()
    world.create_backfill_tables()
    result = run(world.backfill_machine(**env), execution_input)
    assert result["status"] == "FAILED"
    assert result["error"] == "Backfill.InvalidInput"
    assert result["cause"].startswith("Invalid input: ")
    assert expected in result["cause"], result["cause"]
    assert "Copy every segment" not in states_entered(result["executionArn"])


def test_backfill_refuses_a_target_whose_key_types_differ(bridge: LambdaBridge) -> None:
    world = load_world(TableShape(stream_view=None, pitr=False))
    world.seed([{"pk": {"S": "k"}}])
    world.target.create_table(
        TableName=world.target_table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    world.create_backfill_tables()
    result = run(world.backfill_machine(), {"writeMode": "overwrite"})
    assert result["error"] == "Backfill.InvalidInput"
    assert "the target's keys ['pk (HASH, N)'] differ from the source's ['pk (HASH, S)']" in result["cause"]


def test_backfill_fails_readably_when_a_segment_cannot_be_copied(bridge: LambdaBridge) -> None:
    # GIVEN a segment whose copy fails for good (say the target refuses the items)
    from ddb_bridge.core.errors import PermanentError

    world = load_world(TableShape(stream_view=None, pitr=False))
    world.seed([{"pk": {"S": f"k{i}"}} for i in range(20)])
    world.create_target_table()
    world.create_backfill_tables()
    machine = world.backfill_machine()

    def refuse_segment_1(event: dict[str, Any]) -> None:
        if event.get("action") == "copy" and event.get("segment") == 1:
            raise PermanentError("ValidationException", "One or more parameter values were invalid: injected")

    bridge.hooks["backfill"] = refuse_segment_1

    # WHEN the backfill runs, THEN it fails (no retry of a permanent error) at "Backfill failed", saying why
    result = run(machine, {"writeMode": "overwrite", "totalSegments": 2})
    assert result["status"] == "FAILED"
    assert states_entered(result["executionArn"])[-1] == "Backfill failed"
    assert bridge.errors["backfill"] >= 1
    cause = result["cause"]
    assert "did not finish ([1])" in cause and "to resume" in cause, cause


def test_backfill_refuses_to_resume_with_other_segments(bridge: LambdaBridge) -> None:
    world = load_world(TableShape(stream_view=None, pitr=False))
    world.seed([{"pk": {"S": f"k{i}"}} for i in range(5)])
    world.create_target_table()
    world.create_backfill_tables()
    machine = world.backfill_machine()
    assert run(machine, {"backfillId": "b1", "totalSegments": 2, "writeMode": "overwrite"})["status"] == "SUCCEEDED"
    result = run(machine, {"backfillId": "b1", "totalSegments": 3, "writeMode": "overwrite"})
    assert result["error"] == "Backfill.InvalidInput"
    assert "was started with 2 segments" in result["cause"]


def test_backfill_reports_progress_per_segment(bridge: LambdaBridge) -> None:
    world = load_world(TableShape(key_schema=SCHEMA, stream_view=None, billing="PROVISIONED"))
    world.seed([item(i) for i in range(80)])
    world.create_target_table(billing="PROVISIONED")
    world.create_backfill_tables()
    result = run(world.backfill_machine(), {"writeMode": "overwrite", "totalSegments": 4, "throughputPercent": 100})
    assert result["status"] == "SUCCEEDED", result.get("cause")
    summary = result["output"]
    assert [s["segment"] for s in summary["perSegment"]] == [0, 1, 2, 3]
    assert sum(s["copied"] for s in summary["perSegment"]) == summary["copied"] == 80
    assert summary["itemsPerSecond"] > 0
    assert summary["calls"] >= 4
