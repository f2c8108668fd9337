"""The full load's sample events (events/full_load_*.json): the console input and the function's event."""

from __future__ import annotations

from typing import Any

from ddb_bridge.loads.fullload.plan import parse_input
from ddb_bridge.loads.settings import FullLoadSettings
from harness.events import load
from harness.lambdas import LocalFunction
from harness.load_world import load_world


def test_the_console_input_is_valid_and_spells_out_the_defaults(aws: Any) -> None:
    world = load_world()
    event = load("events/full_load_start.json")
    settings = FullLoadSettings.from_env(world.full_load_env())
    assert parse_input(event, settings) == {k: v for k, v in event.items() if k != "comment"}


def test_the_plan_event_runs_through_the_function(aws: Any) -> None:
    world = load_world()
    fn = LocalFunction("full_load_control", world.full_load_env())
    plan = fn.invoke(load("events/full_load_control_plan.json"))
    assert plan["valid"] is True
    assert plan["exportPrefix"] == "ddb-bridge/full-load/console-test"
    assert plan["pollSeconds"] == 30 and plan["safetySeconds"] == 180 * 60
    assert plan["targetTable"] == world.target_table and plan["exportBucketOwner"] == world.export_bucket_owner
