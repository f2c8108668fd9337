"""The full load's execution input, validated, and the plan every later step follows."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from typing import Any

from ...core.observability import MetricUnit, metrics
from ..settings import FullLoadSettings
from .clients import Json


class InvalidInput(ValueError):
    """The execution input is wrong; the message says which field and what it expects."""


# ---- input -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Field:
    minimum: int
    maximum: int
    default: int
    unit: str


def _input_fields(settings: FullLoadSettings) -> dict[str, _Field]:
    return {
        "pollSeconds": _Field(1, 3600, 60, "seconds between two DescribeExport/DescribeImport calls"),
        "exportTimeoutMinutes": _Field(1, 1440, 360, "minutes the export may take"),
        "importTimeoutMinutes": _Field(1, 2880, 1380, "minutes the import may take"),
        "handoverSafetyMinutes": _Field(
            10,
            720,
            settings.safety_minutes,
            "minutes kept in hand before the stream's 24 h retention, for replication to catch up",
        ),
    }


def _whole_number(name: str, value: Any, spec: _Field) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidInput(
            f"{name} must be a whole number from {spec.minimum} to {spec.maximum} ({spec.unit}), got {value!r}"
        )
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(
            f"{name} must be a whole number from {spec.minimum} to {spec.maximum} ({spec.unit}), got {value!r}"
        ) from None
    if not spec.minimum <= number <= spec.maximum:
        raise InvalidInput(f"{name} must be from {spec.minimum} to {spec.maximum} ({spec.unit}), got {number}")
    return number


def parse_input(raw: Any, settings: FullLoadSettings) -> dict[str, int]:
    """The execution input with defaults filled in; InvalidInput names the first bad field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidInput(f"the execution input must be a JSON object, got {type(raw).__name__}")
    fields = _input_fields(settings)
    for name in raw:
        if name not in fields and name != "comment":
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise InvalidInput(f"unknown field {name!r}{hint}; allowed: {', '.join(fields)}, comment")
    return {
        name: _whole_number(name, raw[name], spec) if name in raw else spec.default for name, spec in fields.items()
    }


def plan(event: Json, settings: FullLoadSettings, now_ms: int) -> Json:
    """Validate the input and fix every name the run will use (prefix, client token, deadlines)."""
    execution = str(event.get("execution") or "manual")
    try:
        values = parse_input(event.get("input"), settings)
    except InvalidInput as exc:
        message = f"Invalid input: {exc}. Fix the execution input and start a new execution."
        metrics.add_metric(name="FullLoadInvalidInput", unit=MetricUnit.Count, value=1)
        return {"valid": False, "message": message}
    token = hashlib.sha256(f"{settings.source_table}/{execution}".encode()).hexdigest()[:32]
    return {
        "valid": True,
        "execution": execution,
        "clientToken": token,
        "sourceTable": settings.source_table,
        "sourceRegion": settings.source_region,
        "targetTable": settings.target.table,
        "targetRegion": settings.target.region,
        "crossPartition": settings.cross_partition,
        "exportBucket": settings.export_bucket,
        "exportBucketOwner": settings.export_bucket_owner,
        "exportPrefix": f"{settings.export_prefix}/{_safe_key(execution)}",
        "peerBucket": settings.peer_bucket,
        "pollSeconds": values["pollSeconds"],
        "exportTimeoutSeconds": values["exportTimeoutMinutes"] * 60,
        "importTimeoutSeconds": values["importTimeoutMinutes"] * 60,
        "safetySeconds": values["handoverSafetyMinutes"] * 60,
        "plannedAt": now_ms,
    }


def _safe_key(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)[:120] or "run"
