"""statemachine/full_load.asl.json executed by moto's Step Functions engine, against moto over HTTP.

Export -> import -> handover to live replication, with changes made while the load runs; every pre-check
failure and its message; bad input; the stream-retention guard; a count mismatch; a failed export; and the
cross-partition path (export -> copy with peer keys from Secrets Manager -> import in aws-cn).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness import lambda_bridge
from harness.lambda_bridge import LambdaBridge
from harness.load_world import PEER_ACCOUNT, LoadWorld, TableShape, load_world
from harness.workflows import run, states_entered
from harness.world import scan_all

HOUR_MS = 3600 * 1000


@pytest.fixture
def bridge(aws: Any) -> Iterator[LambdaBridge]:
    bridge = lambda_bridge.install()
    yield bridge
    bridge.hooks.clear()


def rich_item(i: int, key: dict[str, Any]) -> dict[str, Any]:
    """An item with every attribute type: binary (also nested), 38-digit numbers, sets, maps, lists."""
    return {
        **key,
        "s": {"S": f"héllo ✓ {i}"},
        "n38": {"N": "9" * 38},
        "nsmall": {"N": "-0.00000000000000000000000000000000000123456789"},
        "nbig": {"N": "1.2345678901234567890123456789012345678E+125"},
        "b": {"B": bytes(range(256))[i % 7 :]},
        "yes": {"BOOL": i % 2 == 0},
        "nothing": {"NULL": True},
        "ss": {"SS": ["a", "ß", f"x{i}"]},
        "ns": {"NS": ["1", "12345678901234567890123456789012345678", "-3.5"]},
        "bs": {"BS": [b"\x00", b"\xff\xfe", bytes([0x10, i % 256])]},  # distinct: DynamoDB refuses duplicates
        "m": {"M": {"deep": {"M": {"bin": {"B": b"\x00\x01" * (i + 1)}, "l": {"L": [{"B": b"\xff"}, {"S": "x"}]}}}}},
        "l": {"L": [{"N": "1"}, {"M": {"b": {"B": b"\x10\x80"}}}, {"BS": [b"\x01", b"\x02"]}, {"L": []}]},
        "group": {"S": f"g{i % 3}"},
    }


SCHEMAS = {
    "string hash + number range": [("pk", "S"), ("sk", "N")],
    "binary hash": [("pk", "B")],
}


def key_of(schema: list[tuple[str, str]], i: int) -> dict[str, Any]:
    values = {"S": {"S": f"user#{i % 40}"}, "N": {"N": str(i)}, "B": {"B": b"\x00key" + i.to_bytes(2, "big")}}
    return {name: values[typ] for name, typ in schema}


def on_step(bridge: LambdaBridge, action: str, do: Callable[[], None]) -> list[dict[str, Any]]:
    """Run `do` (once) just before the full-load step `action` runs; returns the events seen."""
    seen: list[dict[str, Any]] = []

    def hook(event: dict[str, Any]) -> None:
        seen.append(event)
        if event.get("action") == action and sum(e.get("action") == action for e in seen) == 1:
            do()

    bridge.hooks["full_load_control"] = hook
    return seen


def shift_clock(bridge: LambdaBridge, offset_ms: list[int]) -> None:
    """Make every full_load_control sandbox see now + offset_ms[0]."""

    def configure(sandbox: Any) -> None:
        clients = sandbox.layer_module("ddb_bridge.loads.fullload.handler").runtime().clients
        real = clients.now_ms
        clients.now_ms = lambda: real() + offset_ms[0]

    bridge.configure("full_load_control", configure)


def mapping_state(world: LoadWorld) -> str:
    assert world.mapping_uuid
    return str(world.lambda_.get_event_source_mapping(UUID=world.mapping_uuid)["State"])


def stream_records(world: LoadWorld) -> int:
    desc = world.streams.describe_stream(StreamArn=world.stream_arn)["StreamDescription"]
    total = 0
    for shard in desc["Shards"]:
        it = world.streams.get_shard_iterator(
            StreamArn=world.stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            page = world.streams.get_records(ShardIterator=it, Limit=1000)
            total += len(page["Records"])
            it = page.get("NextShardIterator") if page["Records"] else None
    return total


def bucket_keys(world: LoadWorld) -> list[str]:
    s3 = world.target_session.client("s3") if world.export_bucket_owner else world.s3
    return [o["Key"] for o in s3.list_objects_v2(Bucket=world.export_bucket).get("Contents", [])]


# ---- the happy path ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("schema", list(SCHEMAS.values()), ids=list(SCHEMAS))
def test_full_load_exports_imports_and_hands_over_without_losing_a_change(
    bridge: LambdaBridge, schema: list[tuple[str, str]]
) -> None:
    # GIVEN a source table with every attribute type, a GSI, and the replicator's mapping disabled at TRIM_HORIZON
    world = load_world(TableShape(key_schema=schema, gsi=("group", "S")))
    world.seed([rich_item(i, key_of(schema, i)) for i in range(60)])
    replicator = world.deploy_replicator()
    uuid = world.create_mapping()
    # (as the template deploys it, the function is told its mapping's UUID; without it, it finds the mapping)
    machine = world.full_load_machine(**({"EVENT_SOURCE_MAPPING_UUID": uuid} if schema[0][1] == "S" else {}))
    watcher = world.watcher(replicator)

    # AND changes keep flowing after the export point T, while the import runs
    def changes_after_t() -> None:
        for i in range(0, 60, 4):
            world.put({**rich_item(i, key_of(schema, i)), "s": {"S": "updated after T"}, "b": {"B": b"\x01\x02"}})
        for i in range(1, 60, 6):
            world.delete(key_of(schema, i))
        for i in range(60, 70):
            world.put(rich_item(i, key_of(schema, i)))

    target_at_handover: dict[str, Any] = {}
    on_step(bridge, "start_import", changes_after_t)
    bridge.hooks["full_load_control"] = _chain(
        bridge.hooks["full_load_control"],
        lambda event: (
            target_at_handover.update(scan_all(world.target, world.target_table))
            if event["action"] == "enable_replication"
            else None
        ),
    )

    # WHEN the full load runs
    result = run(machine, {"pollSeconds": 1, "comment": "test"})

    # THEN it succeeds, reports the counts, and replication (enabled at the end) catches up: target == source
    assert result["status"] == "SUCCEEDED", result.get("cause")
    report = result["output"]
    assert report["exportedItems"] == report["importedItems"] == 60
    assert report["targetTable"] == world.target_table
    assert report["handoverMinutesToSpare"] > 20 * 60
    assert len(target_at_handover) == 60  # the import holds the table as of T: the later changes are not in it
    assert target_at_handover != scan_all(world.source, world.source_table)
    watcher.drain()
    assert scan_all(world.target, world.target_table) == scan_all(world.source, world.source_table)
    assert len(scan_all(world.target, world.target_table)) == 60 + 10 - 10
    assert watcher.enabled_at is not None

    # AND the imported table has the source's key schema, GSI and billing mode
    target = world.target.describe_table(TableName=world.target_table)["Table"]
    source = world.source.describe_table(TableName=world.source_table)["Table"]
    assert target["KeySchema"] == source["KeySchema"]
    assert [g["IndexName"] for g in target["GlobalSecondaryIndexes"]] == ["by-group"]
    assert target["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def _chain(*hooks: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], None]:
    def hook(event: dict[str, Any]) -> None:
        for h in hooks:
            h(event)

    return hook


# ---- pre-checks --------------------------------------------------------------------------------------------
def _no_mapping(world: LoadWorld) -> None:
    pass


PRECHECKS: dict[str, tuple[TableShape, Callable[[LoadWorld], Any], dict[str, str], list[str]]] = {
    "pitr off": (
        TableShape(pitr=False),
        LoadWorld.create_mapping,
        {},
        ["Point-in-time recovery is DISABLED", "update-continuous-backups", "PointInTimeRecoveryEnabled=true"],
    ),
    "stream off": (
        TableShape(stream_view=None),
        _no_mapping,
        {},
        ["stream of", "is off", "StreamViewType=NEW_AND_OLD_IMAGES"],
    ),
    "stream keys only": (
        TableShape(stream_view="KEYS_ONLY"),
        LoadWorld.create_mapping,
        {},
        ["is KEYS_ONLY", "Disable the stream, then enable it again"],
    ),
    "no event source": (
        TableShape(),
        _no_mapping,
        {},
        ["No event source mapping", "--starting-position TRIM_HORIZON --no-enabled"],
    ),
    "event source enabled": (
        TableShape(),
        lambda w: w.create_mapping(enabled=True),
        {},
        ["it is Enabled", "delete-event-source-mapping"],
    ),
    "event source at LATEST": (
        TableShape(),
        lambda w: w.create_mapping(starting_position="LATEST"),
        {},
        ["starts at LATEST", "would be lost"],
    ),
    "event source drops old records": (
        TableShape(),
        lambda w: w.create_mapping(max_record_age=3600),
        {},
        ["MaximumRecordAgeInSeconds=3600", "set it to -1"],
    ),
    "two event sources": (
        TableShape(),
        lambda w: (w.create_mapping(), w.create_mapping()),
        {},
        ["2 event source mappings", "keep exactly one"],
    ),
    "replicator missing": (
        TableShape(),
        _no_mapping,
        {"REPLICATOR_FUNCTION_NAME": "no-such-function"},
        ["no-such-function does not exist"],
    ),
    "target table exists": (
        TableShape(),
        lambda w: (
            w.create_mapping(),
            w.target.create_table(
                TableName=w.target_table,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            ),
        ),
        {},
        ["already exists", "backfill workflow"],
    ),
    "local secondary index": (
        TableShape(key_schema=[("pk", "S"), ("sk", "S")], lsi=("created", "N")),
        LoadWorld.create_mapping,
        {},
        ["local secondary indexes (by-created)", "ImportTable cannot create them"],
    ),
    "export bucket missing": (
        TableShape(),
        lambda w: (w.create_mapping(), w.target_session.client("s3").delete_bucket(Bucket=w.export_bucket)),
        {},
        ["export bucket", "is not reachable"],
    ),
}


@pytest.mark.parametrize("case", list(PRECHECKS))
def test_full_load_precheck_failure_stops_before_the_export_with_a_fix(bridge: LambdaBridge, case: str) -> None:
    shape, setup, env, expected = PRECHECKS[case]
    # GIVEN a world with one thing wrong
    world = load_world(shape)
    world.seed([{"pk": {"S": f"k{i}"}, "sk": {"S": "x"}, "created": {"N": "1"}} for i in range(3)])
    world.deploy_replicator()
    setup(world)
    machine = world.full_load_machine(**env)

    # WHEN the full load runs
    result = run(machine, {"pollSeconds": 1})

    # THEN it fails at the pre-checks, says what is wrong and how to fix it, and touched nothing
    assert result["status"] == "FAILED"
    assert result["error"] == "FullLoad.PreCheckFailed"
    assert "nothing was exported" in result["cause"]
    for fragment in expected:
        assert fragment in result["cause"], result["cause"]
    assert "Export the source table at time T" not in states_entered(result["executionArn"])
    if case != "export bucket missing":
        assert bucket_keys(world) == []
    if world.mapping_uuid and case != "event source enabled":
        assert mapping_state(world) == "Disabled"


def test_full_load_precheck_checks_the_mapping_the_stack_names(bridge: LambdaBridge) -> None:
    world = load_world()
    world.deploy_replicator()
    world.create_mapping()
    missing = run(world.full_load_machine(EVENT_SOURCE_MAPPING_UUID="0f0e0d0c-0b0a-4900-8800-112233445566"), {})
    assert missing["error"] == "FullLoad.PreCheckFailed"
    assert (
        "The event source mapping 0f0e0d0c-0b0a-4900-8800-112233445566 (EVENT_SOURCE_MAPPING_UUID) does not "
        "exist" in missing["cause"]
    )
    other = load_world()  # a mapping on another table's stream
    other.deploy_replicator()
    wrong = run(world.full_load_machine(EVENT_SOURCE_MAPPING_UUID=other.create_mapping()), {})
    assert wrong["error"] == "FullLoad.PreCheckFailed"
    assert f"not the table's current stream {world.stream_arn}" in wrong["cause"]


def test_full_load_precheck_lists_every_failure_at_once(bridge: LambdaBridge) -> None:
    world = load_world(TableShape(pitr=False))
    world.deploy_replicator()
    world.create_mapping(starting_position="LATEST")
    result = run(world.full_load_machine(), {})
    assert result["error"] == "FullLoad.PreCheckFailed"
    assert result["cause"].startswith("2 pre-check(s) failed")
    assert "point-in-time recovery" in result["cause"] and "starts at LATEST" in result["cause"]


# ---- bad input ---------------------------------------------------------------------------------------------
BAD_INPUTS: dict[str, tuple[Any, str]] = {
    "poll zero": ({"pollSeconds": 0}, "pollSeconds must be from 1 to 3600"),
    "poll text": ({"pollSeconds": "soon"}, "pollSeconds must be a whole number from 1 to 3600"),
    "typo": ({"pollSecond": 5}, "unknown field 'pollSecond' (did you mean pollSeconds?)"),
    "safety too small": ({"handoverSafetyMinutes": 5}, "handoverSafetyMinutes must be from 10 to 720"),
    "not an object": ([1, 2], "the execution input must be a JSON object, got list"),
    "boolean": ({"exportTimeoutMinutes": True}, "exportTimeoutMinutes must be a whole number"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_full_load_rejects_bad_input_before_any_check(bridge: LambdaBridge, case: str) -> None:
    execution_input, expected = BAD_INPUTS[case]
    world = load_world()
    world.deploy_replicator()
    world.create_mapping()
    result = run(world.full_load_machine(), execution_input)
    assert result["status"] == "FAILED"
    assert result["error"] == "FullLoad.InvalidInput"
    assert expected in result["cause"]
    assert result["cause"].startswith("Invalid input: ")
    assert states_entered(result["executionArn"])[-1] == "Input is invalid"


# ---- the stream retention guard ----------------------------------------------------------------------------
@pytest.mark.parametrize("late_at", ["describe_export", "describe_import", "enable_replication"])
def test_full_load_stops_before_stream_records_could_expire(bridge: LambdaBridge, late_at: str) -> None:
    # GIVEN a full load whose clock jumps 23 h past the export point at some step
    world = load_world()
    world.seed([{"pk": {"S": f"k{i}"}} for i in range(20)])
    world.deploy_replicator()
    world.create_mapping()
    machine = world.full_load_machine()
    offset = [0]
    shift_clock(bridge, offset)
    on_step(bridge, late_at, lambda: offset.__setitem__(0, 23 * HOUR_MS))
    world.put({"pk": {"S": "written after T"}})

    # WHEN it runs
    result = run(machine, {"pollSeconds": 1, "handoverSafetyMinutes": 120})

    # THEN it stops with the options named, replication was never enabled, and the stream still holds everything
    assert result["status"] == "FAILED"
    assert result["error"] == "FullLoad.StreamRetentionExceeded"
    cause = result["cause"]
    assert cause.startswith("Stopped before any change could be lost")
    for option in ("rerun the full load", "Kinesis Data Streams", "backfill workflow", "NOT enabled"):
        assert option in cause, cause
    assert mapping_state(world) == "Disabled"
    assert stream_records(world) == 21


# ---- failures after the export -----------------------------------------------------------------------------
def test_full_load_refuses_the_handover_when_item_counts_differ(bridge: LambdaBridge) -> None:
    # GIVEN an export whose data file loses one item before the import reads it
    world = load_world()
    world.seed([{"pk": {"S": f"k{i}"}} for i in range(10)])
    world.deploy_replicator()
    world.create_mapping()
    machine = world.full_load_machine()
    s3 = world.target_session.client("s3")

    def drop_one_item() -> None:
        key = next(k for k in bucket_keys(world) if "/data/" in k)
        lines = gzip.decompress(s3.get_object(Bucket=world.export_bucket, Key=key)["Body"].read()).splitlines()
        s3.put_object(Bucket=world.export_bucket, Key=key, Body=gzip.compress(b"\n".join(lines[:-1]) + b"\n"))

    on_step(bridge, "start_import", drop_one_item)

    # WHEN the full load runs, THEN it fails on the count and leaves replication disabled
    result = run(machine, {"pollSeconds": 1})
    assert result["error"] == "FullLoad.CountMismatch"
    assert result["cause"].startswith("The import created 9 items but the export holds 10")
    assert mapping_state(world) == "Disabled"


def test_full_load_reports_a_failed_export(bridge: LambdaBridge) -> None:
    world = load_world()
    world.seed([{"pk": {"S": "k"}}])
    world.deploy_replicator()
    world.create_mapping()
    machine = world.full_load_machine()
    on_step(bridge, "start_export", lambda: world.target_session.client("s3").delete_bucket(Bucket=world.export_bucket))
    result = run(machine, {"pollSeconds": 1})
    assert result["error"] == "FullLoad.ExportFailed"
    assert "failed: S3NoSuchBucket" in result["cause"] and "start a new execution" in result["cause"]
    assert mapping_state(world) == "Disabled"


def test_full_load_catches_an_aws_error_with_a_readable_cause(bridge: LambdaBridge) -> None:
    # GIVEN the source table disappears after the pre-checks (a permanent error, not retried)
    world = load_world()
    world.seed([{"pk": {"S": "k"}}])
    world.deploy_replicator()
    world.create_mapping()
    machine = world.full_load_machine()
    on_step(bridge, "start_export", lambda: world.source.delete_table(TableName=world.source_table))
    result = run(machine, {"pollSeconds": 1})
    assert result["status"] == "FAILED"
    assert states_entered(result["executionArn"])[-1] == "Full load failed"
    cause = json.loads(result["cause"])
    assert cause["errorType"] == result["error"]
    assert "ExportTableToPointInTime" in cause["errorMessage"]
    assert bridge.invocations["full_load_control"] >= 3


# ---- cross-partition ---------------------------------------------------------------------------------------
def test_full_load_across_partitions_copies_the_export_with_peer_keys(bridge: LambdaBridge) -> None:
    # GIVEN a target in aws-cn (another account, reachable only with keys kept in Secrets Manager)
    world = load_world(TableShape(key_schema=[("pk", "S"), ("sk", "N")]), cross_partition=True)
    world.seed([rich_item(i, key_of([("pk", "S"), ("sk", "N")], i)) for i in range(30)])
    world.deploy_replicator()
    world.create_mapping()
    machine = world.full_load_machine()

    # WHEN the full load runs
    result = run(machine, {"pollSeconds": 1})

    # THEN the export files were copied to the peer bucket, the import ran there, and replication was enabled
    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert result["output"]["crossPartition"] is True
    assert result["output"]["importArn"].startswith(f"arn:aws-cn:dynamodb:cn-north-1:{PEER_ACCOUNT}:table/")
    assert "Copy the export files to the peer partition" in states_entered(result["executionArn"])
    peer_s3 = world.target_session.client("s3")
    copied = [o["Key"] for o in peer_s3.list_objects_v2(Bucket=world.peer_bucket or "").get("Contents", [])]
    assert copied == [k for k in bucket_keys(world)] and copied
    assert scan_all(world.target, world.target_table) == scan_all(world.source, world.source_table)
    assert mapping_state(world) == "Enabled"
