"""Batches that exhaust their retries are recovered from the on-failure queue (ddb_bridge.ops.recover).

The harness's event sources write exactly Lambda's on-failure message (a pointer into the stream, not
the records); `recover` re-reads the range and invokes the function with the Lambda event it missed.
Every test ends with the tables compared against an oracle.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from ddb_bridge.ops.recover import BadMessage, main, pointer_of, recover
from harness.bidirectional import TwoRegions
from harness.events import load
from harness.faults import Fault, inject
from harness.lambdas import LocalFunction
from harness.lww import Oracle, SampleWriter, canonical_item
from harness.streams import StreamPoller, sqs_on_failure
from harness.world import one_way_world, scan_all

REPLICATOR_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ddb-bridge-TableReplicatorFunction"


def local_invoker(functions: dict[str, LocalFunction]) -> Any:
    """`recover`'s invoker: the deployed function named in the message, invoked as Lambda would."""

    def invoker(target: str) -> Any:
        fn = functions[target]

        def invoke(event: dict[str, Any]) -> dict[str, Any]:
            try:
                return dict(fn.invoke(event) or {})
            except Exception:  # noqa: BLE001 - a function error, as Lambda reports it
                return {"FunctionError": "Unhandled"}

        return invoke

    return invoker


def regional(service: str, region: str) -> Any:
    return boto3.client(service, region_name=region)


def queued(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def metric_values(stdout: str, name: str) -> list[float]:
    """The values of one metric in the EMF lines Powertools printed."""
    values: list[float] = []
    for line in stdout.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            if name in document:
                values.extend(document[name] if isinstance(document[name], list) else [document[name]])
    return values


@pytest.fixture
def failed_batches(aws: Any, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A replicator whose target denied access until its batches went to the on-failure queue."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # a script imported earlier may have set it
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env(POWERTOOLS_METRICS_NAMESPACE="DdbBridge"))
    fn.invoke({"Records": []})
    client = fn.layer_module("ddb_bridge.core.clients").target_sessions.current().dynamodb
    denied = inject(client, "BatchWriteItem", Fault("AccessDeniedException", times=10**9))
    for i in range(30):
        world.source.put_item(TableName=world.source_table, Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})
    for i in range(0, 30, 4):
        world.source.delete_item(TableName=world.source_table, Key={"pk": {"S": f"k{i}"}})
    poller = StreamPoller(
        world.streams,
        world.stream_arn,
        fn.invoke,
        batch_size=10,
        max_retries=2,
        on_failure=sqs_on_failure(world.sqs, world.on_failure_url),
        function_arn=REPLICATOR_ARN,
    )
    poller.drain()
    return {"world": world, "fn": fn, "denied": denied, "poller": poller, "stdout": capfd.readouterr().out}


def test_a_batch_that_exhausted_its_retries_is_recovered_with_nothing_lost(failed_batches: dict[str, Any]) -> None:
    world, fn, denied, poller = (failed_batches[k] for k in ("world", "fn", "denied", "poller"))
    # GIVEN every batch exhausted its retries (access denied) and went to the on-failure queue as a pointer
    assert poller.stats.sent_to_on_failure == 38 and scan_all(world.target, world.target_table) == {}
    messages = queued(world.sqs, world.on_failure_url)
    assert messages == 4
    # AND each failing batch raised NonRetryableFailures at once, not only as iterator age
    assert sum(metric_values(failed_batches["stdout"], "NonRetryableFailures")) >= 4
    # WHEN the permission is fixed, live replication goes on (newer writes to keys of the lost batches)
    denied.times = denied.injected
    for i in (1, 2, 3):
        world.source.put_item(TableName=world.source_table, Item={"pk": {"S": f"k{i}"}, "v": {"S": "newer"}})
    poller.drain()
    # AND the operator recovers the on-failure queue, re-reading keys from the source (ordered mode)
    report = recover(
        world.sqs,
        world.on_failure_url,
        regional,
        local_invoker({REPLICATOR_ARN: fn}),
        source=world.source,
        source_table=world.source_table,
    )
    # THEN every range was recovered, the queue is empty, and the target equals the source (nothing older won)
    assert (report.recovered, report.expired, report.failed) == (4, 0, 0)
    assert queued(world.sqs, world.on_failure_url) == 0
    assert scan_all(world.target, world.target_table) == scan_all(world.source, world.source_table)


def test_a_range_the_stream_no_longer_holds_is_reported_and_kept(failed_batches: dict[str, Any]) -> None:
    world, fn = failed_batches["world"], failed_batches["fn"]
    # GIVEN the stream trimmed the records the pointers name (moto never trims: DynamoDB's error is injected)
    streams = boto3.client("dynamodbstreams", region_name="us-east-1")
    inject(streams, "GetShardIterator", Fault("TrimmedDataAccessException", times=10**9))
    # WHEN recover runs
    report = recover(
        world.sqs, world.on_failure_url, lambda service, region: streams, local_invoker({REPLICATOR_ARN: fn})
    )
    # THEN each range is reported as expired, with what to do, and every message stays in the queue
    assert (report.recovered, report.expired) == (0, 4)
    assert all("expired" in p and "from the source" in p["expired"] for p in report.problems)
    assert queued(world.sqs, world.on_failure_url) == 4
    # AND the command line says so with its exit status
    code = main(["--queue-url", world.on_failure_url, "--dry-run"])
    assert code == 0 and queued(world.sqs, world.on_failure_url) == 4


def test_a_relay_batch_that_exhausted_its_retries_is_recovered_from_kinesis(aws: Any) -> None:
    # GIVEN Singapore's applier denied access to its table until its batches went to the on-failure queue
    world = TwoRegions()
    on_failure = world.b.sqs.create_queue(QueueName="applier-on-failure")["QueueUrl"]
    applier_arn = "arn:aws:lambda:ap-southeast-1:222222222222:function:ddb-bridge-sg-RelayApplierFunction"
    assert world.b.kinesis_poller is not None and world.b.applier is not None
    world.b.kinesis_poller.max_retries = 1
    world.b.kinesis_poller.function_arn = applier_arn
    world.b.kinesis_poller.on_failure = sqs_on_failure(world.b.sqs, on_failure)
    table = world.b.applier.layer_module("ddb_bridge.relay.applier").runtime().local.dynamodb
    denied = Fault("AccessDeniedException", times=10**9)
    for operation in ("TransactWriteItems", "BatchGetItem"):
        inject(table, operation, denied)
    oracle = Oracle()
    beijing = SampleWriter(world.a.ddb, world.a.table, world.a.tag, oracle)
    for i in range(12):
        beijing.put({"pk": {"S": f"order#{i}"}}, {"note": {"S": "v1"}})
    world.drain()
    beijing.delete({"pk": {"S": "order#0"}})
    beijing.update({"pk": {"S": "order#1"}}, {"note": {"S": "v2"}})
    world.drain()
    assert world.b.kinesis_poller.stats.sent_to_on_failure >= 2 and world.b.items() == {}
    # WHEN the permission is fixed and the operator recovers the relay's on-failure queue
    denied.times = denied.injected
    report = recover(world.b.sqs, on_failure, regional, local_invoker({applier_arn: world.b.applier}))
    world.drain()
    # THEN both regions hold exactly what last-writer-wins says, and the queue is empty
    assert report.recovered >= 2 and report.expired == report.failed == 0
    expected = oracle.expected()
    for side in world.sides:
        assert {k: canonical_item(v) for k, v in side.items().items()} == expected
    assert queued(world.b.sqs, on_failure) == 0


def test_the_pointers_are_read_exactly_as_lambda_writes_them() -> None:
    ddb = pointer_of(load("events/onfailure_ddb_stream.json"))
    assert (ddb.kind, ddb.shard_id, ddb.start, ddb.end, ddb.size) == (
        "dynamodb",
        "shardId-00000001795330000000-864758bb",
        "800000000003126276362",
        "800000000003126276370",
        9,
    )
    assert ddb.region == "us-east-1" and ddb.function_arn and ddb.function_arn.endswith("TableReplicatorFunction")
    kinesis = pointer_of(load("events/onfailure_kinesis.json"))
    assert kinesis.kind == "kinesis" and kinesis.region == "ap-southeast-1" and kinesis.size == 500
    for junk in ({}, {"DDBStreamBatchInfo": {"shardId": "s"}}, {"KinesisBatchInfo": "x"}, []):
        with pytest.raises(BadMessage):
            pointer_of(junk)
