"""The retention guard: stop before a stream record after the export point can expire."""

from __future__ import annotations

from datetime import UTC, datetime

from ...core.errors import PermanentError
from ...core.observability import MetricUnit, metrics
from .clients import Json

STREAM_RETENTION_SECONDS = 24 * 3600


class RetentionExceeded(PermanentError):
    """The handover can no longer happen before stream records after the export point expire: stop now."""

    def __init__(self, message: str) -> None:
        super().__init__("RetentionExceeded", message)


# ---- retention guard ---------------------------------------------------------------------------------------
def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def retention(plan_: Json, export_time_ms: int, now_ms: int, max_record_age: int | None = None) -> Json:
    """Whether live replication can still start before a change made after the export point expires.

    The stream keeps a record 24 h (or the mapping's MaximumRecordAgeInSeconds, when shorter); the
    handover must happen before that, minus the safety margin that replication needs to catch up.
    """
    limit = STREAM_RETENTION_SECONDS if not max_record_age else min(STREAM_RETENTION_SECONDS, max_record_age)
    deadline = export_time_ms + (limit - int(plan_["safetySeconds"])) * 1000
    left_minutes = (deadline - now_ms) // 60000
    verdict: Json = {"ok": now_ms < deadline, "handoverDeadline": _iso(deadline), "minutesLeft": int(left_minutes)}
    if not verdict["ok"]:
        verdict["message"] = (
            f"Stopped before any change could be lost: live replication had to start by {_iso(deadline)} "
            f"(the export point {_iso(export_time_ms)} plus the stream's {limit // 3600} h retention minus "
            f"{int(plan_['safetySeconds']) // 60} min to catch up), and it is now {_iso(now_ms)}. Replication was "
            "NOT enabled and no change has expired yet. Options: (1) rerun the full load: delete the target table "
            f"{plan_['targetTable']} in {plan_['targetRegion']} (the import may still be creating it) and start a "
            "new execution, once the import can finish sooner (fewer or smaller items, a quieter time); "
            "(2) buffer the changes where they live longer: stream the source table to Kinesis Data Streams "
            "(retention up to 365 days) before the export and replicate from there; (3) create the target "
            "table yourself, enable live replication first and copy the existing items with the backfill "
            "workflow, which has no retention limit."
        )
        metrics.add_metric(name="FullLoadRetentionStops", unit=MetricUnit.Count, value=1)
    return verdict


def _guard(plan_: Json, export_time_ms: int, now_ms: int, pre: Json) -> Json:
    """The retention verdict; raises RetentionExceeded (the workflow stops) when it is too late."""
    verdict = retention(plan_, export_time_ms, now_ms, pre.get("maxRecordAgeSeconds"))
    if not verdict["ok"]:
        raise RetentionExceeded(verdict["message"])
    return verdict
