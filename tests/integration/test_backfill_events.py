"""The backfill's sample events (events/backfill_*.json): console inputs, and the function's own events."""

from __future__ import annotations

from typing import Any

import pytest

from ddb_bridge.loads.backfill.plan import parse_input
from harness.events import load
from harness.lambdas import LocalFunction
from harness.load_world import TableShape, load_world
from harness.world import scan_all


@pytest.mark.parametrize("name", ["backfill_start.json", "backfill_overwrite_start.json"])
def test_the_console_inputs_are_valid(name: str) -> None:
    event = load(f"events/{name}")
    values = parse_input(event, "execution-name")
    assert values["backfillId"] == event["backfillId"]
    assert {k: values[k] for k in event if k != "comment"} == {k: v for k, v in event.items() if k != "comment"}


def test_the_plan_and_copy_events_run_through_the_function(aws: Any) -> None:
    # GIVEN a source with items and an empty target
    world = load_world(TableShape(stream_view=None, pitr=False))
    world.seed([{"pk": {"S": f"k{i}"}, "v": {"B": bytes([i])}} for i in range(50)])
    world.create_target_table()
    world.create_backfill_tables()
    fn = LocalFunction("backfill", world.backfill_env())

    # WHEN the plan event, then the copy event for each segment, go through the function
    plan = fn.invoke(load("events/backfill_plan.json"))
    assert plan["valid"] is True and plan["backfillId"] == "sam-local-test" and len(plan["segments"]) == 2
    copy = load("events/backfill_copy_segment.json")
    results = [fn.invoke({**copy, "segment": s}) for s in (0, 1)]

    # THEN both segments are done and the target holds every item
    assert all(r["done"] for r in results)
    assert sum(r["copied"] for r in results) == 50
    assert scan_all(world.target, world.target_table) == scan_all(world.source, world.source_table)
