"""Verify's sample events (events/verify_*.json): the console input, and the function's own events."""

from __future__ import annotations

from typing import Any

from ddb_bridge.verify.plan import parse_input
from harness.events import load
from harness.lambdas import LocalFunction
from harness.load_world import TableShape, load_world
from harness.verify import create_verify_resources, verify_env


def test_the_console_input_is_valid() -> None:
    event = load("events/verify_start.json")
    values = parse_input(event, "execution-name")
    assert {k: values[k] for k in event if k != "comment"} == {k: v for k, v in event.items() if k != "comment"}


def test_the_plan_and_scan_events_run_through_the_function(aws: Any) -> None:
    # GIVEN a source of 50 items and a target that lacks two of them
    world = load_world(TableShape(stream_view=None, pitr=False))
    items = [{"pk": {"S": f"k{i}"}, "v": {"B": bytes([i])}} for i in range(50)]
    world.seed(items)
    world.create_target_table()
    for item in items[2:]:
        world.target.put_item(TableName=world.target_table, Item=item)
    create_verify_resources(world)
    fn = LocalFunction("verify", verify_env(world))

    # WHEN the plan event, then the scan event for each source segment, go through the function
    plan = fn.invoke(load("events/verify_plan.json"))
    assert plan["valid"] is True and plan["verifyId"] == "sam-local-test" and len(plan["segments"]) == 2
    assert plan["keys"] == ["pk"]
    scan = load("events/verify_scan_segment.json")
    results = [fn.invoke({**scan, "segment": s, "totalSegments": 2}) for s in (0, 1)]

    # THEN both segments are done, every source item was compared, and the two missing keys are candidates
    assert all(r["done"] for r in results)
    assert sum(r["scanned"] for r in results) == 50
    assert sum(r["missing"] for r in results) == 2 and sum(r["different"] for r in results) == 0
