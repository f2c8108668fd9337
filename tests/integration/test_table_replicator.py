"""table_replicator against moto over HTTP: source account stream -> target account table by AssumeRole.

Every test ends by comparing the target with an oracle (the source table, or the expected items).
"""

from __future__ import annotations

import datetime
import random
import time

import botocore.credentials
import pytest
from moto.sts.models import sts_backends

from ddb_bridge.core.settings import SettingsError
from harness.faults import Fault, inject
from harness.lambdas import LocalFunction
from harness.moto_server import TARGET_ACCOUNT
from harness.streams import StreamPoller, sqs_on_failure
from harness.workload import every_type_item
from harness.world import EXTERNAL_ID, OneWayWorld, one_way_world, scan_all


def put(world: OneWayWorld, item: dict) -> None:
    world.source.put_item(TableName=world.source_table, Item=item)


def assert_converged(world: OneWayWorld) -> None:
    source = scan_all(world.source, world.source_table)
    target = scan_all(world.target, world.target_table)
    assert target == source, f"{len(source)} source items vs {len(target)} target items"


def test_every_attribute_type_round_trips_byte_for_byte(aws):
    # GIVEN a source with every attribute type, then modifications and deletes
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env())
    for i in range(40):
        put(world, every_type_item(i))
    for i in range(0, 40, 3):
        put(world, {**every_type_item(i), "s": {"S": "changed"}})
    for i in range(0, 40, 5):
        world.source.delete_item(TableName=world.source_table, Key={"pk": {"S": f"item#{i}"}})
    # WHEN the stream drains through the replicator
    StreamPoller(world.streams, world.stream_arn, fn.invoke, batch_size=25).drain()
    # THEN the target equals the source, byte for byte
    assert_converged(world)
    assert len(scan_all(world.target, world.target_table)) == 40 - 8


@pytest.mark.parametrize("schema", [[("pk", "S"), ("sk", "N")], [("h", "B"), ("r", "B")], [("id", "N")]])
def test_composite_numeric_and_binary_keys(aws, schema):
    world = one_way_world(schema)
    fn = LocalFunction("table_replicator", world.replicator_env())
    values = {
        "S": lambda i: {"S": f"k{i % 5}"},
        "N": lambda i: {"N": str(10**30 + i)},
        "B": lambda i: {"B": bytes([0, 255, i % 4])},
    }
    for i in range(30):
        key = {name: values[kind](i if n == 0 else i * 7) for n, (name, kind) in enumerate(schema)}
        put(world, {**key, "v": {"N": str(i)}})
        if i % 4 == 0:
            world.source.delete_item(TableName=world.source_table, Key=key)
    StreamPoller(world.streams, world.stream_arn, fn.invoke, batch_size=7).drain()
    assert_converged(world)


def test_duplicates_and_redelivery_after_partial_failure_converge(aws):
    # GIVEN a target that throttles some batch writes beyond the client's retries,
    # AND an event source that delivers every batch twice
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env(TARGET_MAX_ATTEMPTS="1", WRITE_CONCURRENCY="4"))
    rng = random.Random(7)
    for i in range(300):
        key = f"k{rng.randrange(40)}"
        if rng.random() < 0.2:
            world.source.delete_item(TableName=world.source_table, Key={"pk": {"S": key}})
        else:
            put(world, {"pk": {"S": key}, "v": {"N": str(i)}})
    fn.invoke({"Records": []})  # warm up: the target session exists now
    target_client = fn.layer_module("ddb_bridge.core.clients").target_sessions.current().dynamodb
    fault = inject(
        target_client,
        "BatchWriteItem",
        Fault("ProvisionedThroughputExceededException", times=6, when=lambda r: rng.random() < 0.5),
    )
    poller = StreamPoller(
        world.streams,
        world.stream_arn,
        fn.invoke,
        batch_size=50,
        max_retries=20,
        transform=lambda records: records + records,
    )
    # WHEN the stream drains
    poller.drain()
    # THEN failures were reported and redelivered in order, and the target still equals the source
    assert fault.injected == 6
    assert poller.stats.retries >= 1
    assert poller.stats.sent_to_on_failure == 0
    assert_converged(world)


def test_a_throttled_write_is_retried_not_lost(aws):
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env())
    for i in range(10):
        put(world, {"pk": {"S": f"t{i}"}})
    fn.invoke({"Records": []})
    client = fn.layer_module("ddb_bridge.core.clients").target_sessions.current().dynamodb
    fault = inject(client, "BatchWriteItem", Fault("ProvisionedThroughputExceededException", times=3))
    poller = StreamPoller(world.streams, world.stream_arn, fn.invoke, batch_size=100)
    poller.drain()
    # botocore's adaptive retries absorbed the throttling inside one invocation
    assert fault.injected == 3 and poller.stats.retries == 0
    assert_converged(world)


def test_a_batch_that_keeps_failing_goes_to_the_on_failure_queue(aws):
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env(TARGET_MAX_ATTEMPTS="1"))
    put(world, {"pk": {"S": "a"}})
    fn.invoke({"Records": []})
    client = fn.layer_module("ddb_bridge.core.clients").target_sessions.current().dynamodb
    inject(client, "BatchWriteItem", Fault("InternalServerError", times=100, status=500))
    poller = StreamPoller(
        world.streams,
        world.stream_arn,
        fn.invoke,
        max_retries=2,
        on_failure=sqs_on_failure(world.sqs, world.on_failure_url),
    )
    poller.drain()
    msgs = world.sqs.receive_message(QueueUrl=world.on_failure_url)["Messages"]
    assert '"RetryAttemptsExhausted"' in msgs[0]["Body"] and poller.stats.retries == 2


def test_poison_record_is_parked_whole_while_the_rest_applies(aws):
    # GIVEN a batch whose middle record is an item over 400 KB (it can come from a stream whose
    # target has a smaller budget, or a hand-made event) and a record with bad base64
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env())
    records = [
        {
            "eventName": "INSERT",
            "dynamodb": {
                "Keys": {"pk": {"S": "ok1"}},
                "NewImage": {"pk": {"S": "ok1"}},
                "SequenceNumber": "1",
                "ApproximateCreationDateTime": 1,
            },
        },
        {
            "eventName": "INSERT",
            "dynamodb": {
                "Keys": {"pk": {"S": "huge"}},
                "NewImage": {"pk": {"S": "huge"}, "x": {"S": "x" * 410_000}},
                "SequenceNumber": "2",
                "ApproximateCreationDateTime": 1,
            },
        },
        {
            "eventName": "INSERT",
            "dynamodb": {
                "Keys": {"pk": {"S": "bad"}},
                "NewImage": {"b": {"B": "@@"}},
                "SequenceNumber": "3",
                "ApproximateCreationDateTime": 1,
            },
        },
        {
            "eventName": "INSERT",
            "dynamodb": {
                "Keys": {"pk": {"S": "ok2"}},
                "NewImage": {"pk": {"S": "ok2"}},
                "SequenceNumber": "4",
                "ApproximateCreationDateTime": 1,
            },
        },
    ]
    # WHEN the batch is handled
    response = fn.invoke({"Records": records})
    # THEN nothing is retried, the good records are applied, the poison ones parked with full content
    assert response == {"batchItemFailures": []}
    assert set(scan_all(world.target, world.target_table)) == {'{"pk":{"S":"ok1"}}', '{"pk":{"S":"ok2"}}'}
    parked = sorted(world.parked(), key=lambda m: m["reason"])
    assert [m["reason"] for m in parked] == ["InvalidValue", "ItemTooLarge"]  # bad base64: DynamoDB would refuse it
    import json

    from ddb_bridge.core.parking import record_of

    assert parked[0]["record"] == records[2]
    assert record_of(json.dumps(parked[1])) == records[1]


def _assume_role_calls() -> int:
    """AssumeRole calls the replicator made (moto keeps them in the target account's backend)."""
    return sum(
        r.session_name == "ddb-bridge" and r.external_id == EXTERNAL_ID
        for r in sts_backends[TARGET_ACCOUNT]["aws"].assumed_roles
    )


def test_role_is_assumed_once_per_session_and_refreshed_before_expiry(aws):
    world = one_way_world()
    before = _assume_role_calls()
    fn = LocalFunction("table_replicator", world.replicator_env())
    for i in range(5):
        put(world, {"pk": {"S": f"s{i}"}})
        StreamPoller(world.streams, world.stream_arn, fn.invoke).drain()
    # five invocations, one AssumeRole (the public samples make one per invocation)
    assert _assume_role_calls() - before == 1
    # WHEN the cached credentials are 5 minutes from expiry (as 55 minutes into their hour)
    creds = fn.layer_module("ddb_bridge.core.clients").target_sessions.current().session._session.get_credentials()
    creds._expiry_time = botocore.credentials._local_now() + datetime.timedelta(minutes=5)
    put(world, {"pk": {"S": "late"}})
    StreamPoller(world.streams, world.stream_arn, fn.invoke).drain()
    # THEN the session was refreshed once before it expired, and replication went on
    assert _assume_role_calls() - before == 2
    assert_converged(world)


def test_expired_token_from_the_service_refreshes_the_session(aws):
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env())
    put(world, {"pk": {"S": "a"}})
    poller = StreamPoller(world.streams, world.stream_arn, fn.invoke)
    poller.drain()
    client = fn.layer_module("ddb_bridge.core.clients").target_sessions.current().dynamodb
    inject(client, "BatchWriteItem", Fault("ExpiredTokenException", times=1))
    before = _assume_role_calls()
    put(world, {"pk": {"S": "b"}})
    poller.drain()
    # the failed record was retried on a fresh session (a new AssumeRole), not lost
    assert poller.stats.retries == 1
    assert _assume_role_calls() - before == 1
    assert_converged(world)


def test_a_bad_setting_fails_the_cold_start_naming_the_variable(aws):
    world = one_way_world()
    # (each function loads its own copy of the layer, so the class is matched by name)
    with pytest.raises(ValueError, match="REPLICATION_MODE='fast' is invalid: expected one of ordered, lww") as err:
        LocalFunction("table_replicator", world.replicator_env(REPLICATION_MODE="fast"))
    assert type(err.value).__name__ == SettingsError.__name__
    with pytest.raises(ValueError, match="TARGET_TABLE_NAME is required"):
        LocalFunction("table_replicator", world.replicator_env(TARGET_TABLE_NAME=""))


def stamped(pk: str, ts: int, origin: str, value: str) -> dict:
    return {
        "pk": {"S": pk},
        "last_update_timestamp": {"N": str(ts)},
        "last_updater_region": {"S": origin},
        "v": {"S": value},
    }


def test_lww_mode_applies_by_version_not_arrival_order(aws):
    # GIVEN versioned changes delivered shuffled, with duplicates, in lww mode
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env(REPLICATION_MODE="lww"))
    rng = random.Random(3)
    oracle: dict[str, dict] = {}
    records = []
    for seq in range(200):
        pk = f"k{rng.randrange(15)}"
        ts = 1_000 + seq // 2  # pairs share a millisecond: the origin breaks the tie
        origin = rng.choice(["us-east-1", "eu-west-1"])
        item = stamped(pk, ts, origin, f"v{seq}")
        current = oracle.get(pk)
        if current is None or (ts, origin) > (
            int(current["last_update_timestamp"]["N"]),
            current["last_updater_region"]["S"],
        ):
            oracle[pk] = item
        records.append(
            {
                "eventName": "MODIFY",
                "dynamodb": {
                    "Keys": {"pk": {"S": pk}},
                    "NewImage": item,
                    "SequenceNumber": str(seq),
                    "ApproximateCreationDateTime": 1,
                },
            }
        )
    delivered = records + rng.sample(records, 50)
    rng.shuffle(delivered)
    # WHEN delivered one batch at a time
    for i in range(0, len(delivered), 20):
        assert fn.invoke({"Records": delivered[i : i + 20]}) == {"batchItemFailures": []}
    # THEN the target holds, for each key, exactly the last writer's version
    target = scan_all(world.target, world.target_table)
    assert {k: v for k, v in target.items()} == {f'{{"pk":{{"S":"{pk}"}}}}': item for pk, item in oracle.items()}


def test_coalescing_writes_fewer_requests_than_changes_on_hot_keys(aws):
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env())
    reports = []
    fn.layer_module("ddb_bridge.table.replicator").report_listeners.append(reports.append)
    for i in range(500):
        put(world, {"pk": {"S": f"hot{i % 5}" if i % 2 else f"cold{i}"}, "v": {"N": str(i)}})
    StreamPoller(world.streams, world.stream_arn, fn.invoke, batch_size=250).drain()
    assert_converged(world)
    changes = sum(r.records for r in reports)
    assert changes == 500
    assert sum(r.coalesced for r in reports) > 200
    assert sum(r.write_requests for r in reports) / changes < 0.1


def test_stream_lag_is_measured(aws):
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env())
    reports = []
    fn.layer_module("ddb_bridge.table.replicator").report_listeners.append(reports.append)
    put(world, {"pk": {"S": "x"}})
    time.sleep(0.2)
    StreamPoller(world.streams, world.stream_arn, fn.invoke).drain()
    lags = [lag for r in reports for lag in r.lags_ms]
    assert len(lags) == 1 and 200 <= lags[0] < 10_000


def test_a_record_that_cannot_be_parked_is_retried_not_dropped(aws):
    # GIVEN a poison record (bad base64) and a parking queue that refuses messages for now
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env())
    sqs = fn.layer_module("ddb_bridge.table.replicator").runtime().parking.sqs
    fault = inject(sqs, "SendMessage", Fault("AccessDenied", times=1))
    records = [
        {
            "eventName": "INSERT",
            "dynamodb": {
                "Keys": {"pk": {"S": "ok"}},
                "NewImage": {"pk": {"S": "ok"}},
                "SequenceNumber": "1",
                "ApproximateCreationDateTime": 1,
            },
        },
        {
            "eventName": "INSERT",
            "dynamodb": {
                "Keys": {"pk": {"S": "bad"}},
                "NewImage": {"b": {"B": "@@"}},
                "SequenceNumber": "2",
                "ApproximateCreationDateTime": 1,
            },
        },
    ]
    # WHEN the batch is handled
    response = fn.invoke({"Records": records})
    # THEN the poison record is reported for retry (not lost), the good one is applied, nothing is parked
    assert fault.injected == 1
    assert response == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert set(scan_all(world.target, world.target_table)) == {'{"pk":{"S":"ok"}}'}
    assert world.parked() == []
    # AND when Lambda redelivers from that record and SQS works again, it is parked whole
    assert fn.invoke({"Records": records[1:]}) == {"batchItemFailures": []}
    (parked,) = world.parked()
    assert parked["reason"] == "InvalidValue" and parked["record"] == records[1]
