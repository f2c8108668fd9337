"""moto in a process of its own (the backfill benchmark's setup): state machines still run our functions here."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from harness import moto_server
from harness.lambda_bridge import BRIDGE
from harness.load_world import LoadWorld, load_world
from harness.moto_server import LocalAws
from harness.workflows import run
from harness.world import scan_all


@pytest.fixture(scope="module")
def own_process(local_aws: LocalAws) -> Iterator[LocalAws]:
    """A moto process for this module; the session's in-process server is pointed at again afterwards."""
    before = os.environ["AWS_ENDPOINT_URL"]
    with moto_server.running(own_process=True) as aws:
        assert os.environ["AWS_ENDPOINT_URL"] == aws.endpoint != before
        yield aws
    assert os.environ["AWS_ENDPOINT_URL"] == before


@pytest.fixture(scope="module")
def world(own_process: LocalAws) -> LoadWorld:
    world = load_world()
    world.seed([{"pk": {"S": f"item#{i:03d}"}, "b": {"B": bytes([i % 256]) * 3}} for i in range(60)])
    world.create_target_table()
    world.create_backfill_tables()
    return world


def test_a_backfill_execution_runs_its_lambda_calls_in_this_process(world: LoadWorld) -> None:
    machine = world.backfill_machine(warm=2)
    calls_before = BRIDGE.invocations["backfill"]
    result = run(machine, {"writeMode": "overwrite", "totalSegments": 2, "pageSize": 7}, timeout_s=120)
    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert result["output"]["copied"] == 60
    assert scan_all(world.target, world.target_table) == scan_all(world.source, world.source_table)
    # plan, at least one copy call per segment, summarize: all served by this process's bridge
    assert BRIDGE.invocations["backfill"] - calls_before >= 4


def test_a_function_error_crosses_the_process_boundary_as_lambda_reports_it(world: LoadWorld) -> None:
    world.backfill_machine()
    answer: dict[str, Any] = boto3.client("lambda").invoke(
        FunctionName="backfill", Payload=json.dumps({"action": "nope"}).encode()
    )
    body = json.loads(answer["Payload"].read())
    assert answer["FunctionError"] == "Unhandled"
    assert body["errorType"] == "PermanentError" and "unknown action 'nope'" in body["errorMessage"]


def test_an_unbridged_function_is_left_to_moto(world: LoadWorld) -> None:
    with pytest.raises(boto3.client("lambda").exceptions.ResourceNotFoundException):
        boto3.client("lambda").invoke(FunctionName="never-deployed", Payload=b"{}")


def test_the_server_process_stops_with_its_handle() -> None:
    with moto_server.running(own_process=True) as aws:
        boto3.client("dynamodb").list_tables()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{aws.endpoint}/moto-api/data.json", timeout=5)
