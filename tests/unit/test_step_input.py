"""Malformed Step Functions task input fails the step with a message naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from ddb_bridge.core.errors import PermanentError
from ddb_bridge.loads.backfill.handler import run_action as backfill_step
from ddb_bridge.loads.fullload.handler import run_action as full_load_step

PLAN = {
    "exportBucket": "b",
    "exportPrefix": "p",
    "clientToken": "t",
    "exportTimeoutSeconds": 600,
    "importTimeoutSeconds": 600,
    "safetySeconds": 7200,
    "crossPartition": False,
    "targetTable": "orders",
    "targetRegion": "eu-west-1",
}


def bad_step(run: Any, event: dict[str, Any]) -> str:
    with pytest.raises(PermanentError) as error:
        run(event)
    assert error.value.reason == "BadStepInput"
    return str(error.value)


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (
            {"action": "start_export", "plan": {**PLAN, "exportBucket": 5}, "precheck": {"sourceTableArn": "a"}},
            "plan.exportBucket",
        ),
        ({"action": "start_export", "plan": PLAN, "precheck": {}}, "precheck.sourceTableArn"),
        (
            {
                "action": "describe_export",
                "plan": PLAN,
                "precheck": {},
                "export": {"exportArn": "a", "requestedAt": "x", "deadline": 1},
            },
            "export.requestedAt",
        ),
        (
            {"action": "start_import", "plan": PLAN, "precheck": {"tableCreation": []}, "export": {"exportArn": "a"}},
            "precheck.tableCreation",
        ),
        ({"action": "describe_replication", "replication": {"uuid": "u", "deadline": True}}, "replication.deadline"),
        (
            {"action": "enable_replication", "plan": PLAN, "precheck": {}, "export": {"exportTime": 1}},
            "precheck.mappingUuid",
        ),
    ],
)
def test_a_full_load_step_names_the_field_it_cannot_use(event: dict[str, Any], field: str) -> None:
    message = bad_step(lambda e: full_load_step(e, None, None, 60.0), event)  # type: ignore[arg-type]
    assert f"field {field}" in message and repr(event["action"]) in message


COPY = {"action": "copy", "backfillId": "b1", "segment": 0, "totalSegments": 2, "writeMode": "live"}


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({**COPY, "segment": "0"}, "segment"),
        ({k: v for k, v in COPY.items() if k != "backfillId"}, "backfillId"),
        ({**COPY, "segment": 2}, "segment"),
        ({**COPY, "writeMode": "fast"}, "writeMode"),
        ({**COPY, "pageSize": 0}, "pageSize"),
        ({**COPY, "readUnitsPerSecond": "lots"}, "readUnitsPerSecond"),
        ({**COPY, "consistentRead": "yes"}, "consistentRead"),
        ({"action": "summarize", "plan": {"backfillId": "b", "writeMode": "live", "startedAt": 1}}, "plan.segments"),
        (
            {
                "action": "summarize",
                "plan": {"backfillId": "b", "writeMode": "live", "startedAt": 1, "segments": []},
                "segments": {},
            },
            "segments",
        ),
    ],
)
def test_a_backfill_step_names_the_field_it_cannot_use(event: dict[str, Any], field: str) -> None:
    message = bad_step(lambda e: backfill_step(e, None, None, owner="o", budget_seconds=60.0), event)  # type: ignore[arg-type]
    assert f"field {field}" in message
