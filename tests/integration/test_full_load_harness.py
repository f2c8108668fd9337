"""The harness pieces the full-load and backfill tests stand on, checked against moto in isolation.

moto delivers a DynamoDB stream to an event source mapping even when the mapping is *disabled*, and
empties the shard (the README lists the moto differences we met). These tests pin that behaviour down,
and show that with
harness.lambda_bridge installed a disabled mapping is safe: the records stay in the stream until the
workflow enables the mapping and the local poller delivers them. They also pin the bridge's Lambda
contract that Step Functions' Retry and Catch rely on.
"""

from __future__ import annotations

import json
from typing import Any

import boto3

from harness import lambda_bridge
from harness.load_world import LoadWorld, load_world
from harness.workflows import run


def records_in_stream(world: LoadWorld) -> int:
    shard = world.streams.describe_stream(StreamArn=world.stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    it = world.streams.get_shard_iterator(StreamArn=world.stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    return len(world.streams.get_records(ShardIterator=it, Limit=1000)["Records"])


def test_moto_itself_drains_the_stream_into_a_disabled_mapping(aws: Any) -> None:
    # GIVEN moto's own stream -> mapping delivery (what the bridge turns off)
    world = load_world()
    world.deploy_replicator()
    with lambda_bridge.moto_stream_delivery():
        world.create_mapping(enabled=False)
        # WHEN items are written
        for i in range(5):
            world.put({"pk": {"S": f"k{i}"}})
    # THEN moto emptied the shard although the mapping is disabled: with it, a full load would lose changes
    assert world.lambda_.get_event_source_mapping(UUID=world.mapping_uuid)["State"] == "Disabled"
    assert records_in_stream(world) == 0


def test_with_the_bridge_a_disabled_mapping_keeps_every_record(aws: Any) -> None:
    world = load_world()
    world.deploy_replicator()
    uuid = world.create_mapping(enabled=False)
    for i in range(5):
        world.put({"pk": {"S": f"k{i}"}})
    mapping = world.lambda_.get_event_source_mapping(UUID=uuid)
    assert (mapping["State"], mapping["StartingPosition"]) == ("Disabled", "TRIM_HORIZON")
    assert records_in_stream(world) == 5
    assert lambda_bridge.BRIDGE.invocations["table_replicator"] == 0


ECHO = {
    "StartAt": "Call it",
    "States": {
        "Call it": {
            "Type": "Task",
            "Resource": "${Fn}",
            "End": True,
            "Retry": [{"ErrorEquals": ["RetryableError"], "IntervalSeconds": 1, "MaxAttempts": 2}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Failed"}],
        },
        "Failed": {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"},
    },
}


def _echo_machine(arn: str) -> str:
    definition = json.dumps(ECHO).replace("${Fn}", arn)
    return str(
        boto3.client("stepfunctions").create_state_machine(
            name="echo", definition=definition, roleArn="arn:aws:iam::123456789012:role/ddb-bridge-local-states"
        )["stateMachineArn"]
    )


def test_a_function_error_reaches_step_functions_as_the_exception_class(aws: Any) -> None:
    world = load_world()
    machine = _echo_machine(lambda_bridge.BRIDGE.deploy("full_load_control", world.full_load_env()))
    result = run(machine, {"action": "nope"})
    assert result["status"] == "FAILED"
    assert result["error"] == "PermanentError"
    cause = json.loads(result["cause"])
    assert cause["errorType"] == "PermanentError" and "unknown action 'nope'" in cause["errorMessage"]


def test_a_retryable_error_is_retried_by_the_state(aws: Any) -> None:
    from ddb_bridge.core.errors import RetryableError

    world = load_world()
    bridge = lambda_bridge.BRIDGE
    machine = _echo_machine(bridge.deploy("full_load_control", world.full_load_env()))
    calls: list[dict[str, Any]] = []

    def throttled_once(event: dict[str, Any]) -> None:
        calls.append(event)
        if len(calls) == 1:
            raise RetryableError("ThrottlingException", "injected")

    bridge.hooks["full_load_control"] = throttled_once
    try:
        result = run(machine, {"action": "plan", "input": {}, "execution": "x"})
    finally:
        bridge.hooks.clear()
    assert result["status"] == "SUCCEEDED" and result["output"]["valid"] is True
    assert len(calls) == 2
