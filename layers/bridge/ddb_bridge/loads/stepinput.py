"""Step Functions task input, checked before a step runs: a malformed field fails the step naming the field.

The workflows pass each step what earlier steps returned; a hand-started execution or an edited state
machine can pass anything. A missing or mistyped field raises PermanentError("BadStepInput") with the
field's path and what it must be, instead of a KeyError deep inside a step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.errors import PermanentError

Kind = str  # "text", "number", "whole", "flag", "object", "list", with "?" appended when null may stand in


def _fits(value: Any, kind: Kind) -> bool:
    if kind.endswith("?"):
        return value is None or _fits(value, kind[:-1])
    if kind == "text":
        return isinstance(value, str) and value != ""
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "whole":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "flag":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "list":
        return isinstance(value, list)
    raise ValueError(f"unknown kind {kind}")


_MEANING = {
    "text": "a non-empty string",
    "number": "a number",
    "whole": "a whole number",
    "flag": "true or false",
    "object": "a JSON object",
    "list": "a JSON list",
}


def _describe(kind: Kind) -> str:
    return _MEANING[kind[:-1]] + " or null" if kind.endswith("?") else _MEANING[kind]


def _type_name(value: Any) -> str:
    return (
        "null"
        if value is None
        else {dict: "object", list: "list", str: "string", bool: "boolean"}.get(
            type(value), "number" if isinstance(value, (int, float)) else type(value).__name__
        )
    )


def check(action: str, event: Mapping[str, Any], fields: Mapping[str, Kind]) -> None:
    """Every `section.field` (or top-level `field`) of `fields` is present in `event` and of its kind."""
    for path, kind in fields.items():
        value: Any = event
        for part in path.split("."):
            if not isinstance(value, Mapping) or part not in value:
                if kind.endswith("?"):
                    value = None
                    break
                raise PermanentError("BadStepInput", f"step {action!r}: field {path} is missing ({_describe(kind)})")
            value = value[part]
        if not _fits(value, kind):
            raise PermanentError(
                "BadStepInput", f"step {action!r}: field {path} must be {_describe(kind)}, got {_type_name(value)}"
            )


# What each full-load step reads of the input the workflow hands it.
FULL_LOAD_FIELDS: dict[str, dict[str, Kind]] = {
    "plan": {},  # the plan step judges the execution input itself, and answers with a readable verdict
    "precheck": {"plan": "object"},
    "start_export": {
        "plan.exportBucket": "text",
        "plan.exportPrefix": "text",
        "plan.clientToken": "text",
        "plan.exportTimeoutSeconds": "number",
        "plan.exportBucketOwner": "text?",
        "precheck.sourceTableArn": "text",
    },
    "describe_export": {"export.exportArn": "text", "export.requestedAt": "number", "export.deadline": "number"},
    "copy_export": {
        "plan.exportBucket": "text",
        "plan.exportPrefix": "text",
        "plan.peerBucket": "text",
        "export.exportArn": "text",
        "copy": "object?",
    },
    "start_import": {
        "plan.exportPrefix": "text",
        "plan.clientToken": "text",
        "plan.importTimeoutSeconds": "number",
        "plan.crossPartition": "flag",
        "precheck.tableCreation": "object",
        "export.exportArn": "text",
    },
    "describe_import": {
        "plan.safetySeconds": "number",
        "plan.importTimeoutSeconds": "number",
        "plan.targetTable": "text",
        "plan.targetRegion": "text",
        "export.exportTime": "number",
        "import.importArn": "text",
        "import.startedAt": "number",
        "import.deadline": "number",
    },
    "enable_replication": {
        "plan.safetySeconds": "number",
        "export.exportTime": "number",
        "precheck.mappingUuid": "text",
    },
    "describe_replication": {"replication.uuid": "text", "replication.deadline": "number"},
}

# What each backfill step reads.
BACKFILL_FIELDS: dict[str, dict[str, Kind]] = {
    "plan": {},  # the plan step judges the execution input itself, and answers with a readable verdict
    "copy": {
        "backfillId": "text",
        "segment": "whole",
        "totalSegments": "whole",
        "writeMode": "text",
        "readUnitsPerSecond": "number?",
        "writeUnitsPerSecond": "number?",
        "pageSize": "whole?",
        "callSeconds": "number?",
        "consistentRead": "flag?",
        "calls": "whole?",
        "writeRequests": "whole?",
        "lastEvaluatedKey": "object?",
    },
    "summarize": {
        "plan.backfillId": "text",
        "plan.writeMode": "text",
        "plan.startedAt": "number",
        "plan.segments": "list",
        "segments": "list?",
    },
}


def check_backfill_copy(event: Mapping[str, Any]) -> None:
    """The copy step's ranges, beyond types: a segment of the plan, a known write mode, a page size DynamoDB takes."""
    check("copy", event, BACKFILL_FIELDS["copy"])
    total, segment = event["totalSegments"], event["segment"]
    if not 1 <= total <= 1_000_000:
        raise PermanentError("BadStepInput", "step 'copy': field totalSegments must be from 1 to 1000000")
    if not 0 <= segment < total:
        raise PermanentError("BadStepInput", "step 'copy': field segment must be from 0 to totalSegments - 1")
    if event["writeMode"] not in ("live", "overwrite"):
        raise PermanentError("BadStepInput", "step 'copy': field writeMode must be 'live' or 'overwrite'")
    page = event.get("pageSize")
    if page is not None and not 1 <= page <= 10_000:
        raise PermanentError("BadStepInput", "step 'copy': field pageSize must be from 1 to 10000")
