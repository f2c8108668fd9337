"""The handover: enable the replicator's event source, then watch it come up."""

from __future__ import annotations

from ...core.errors import PermanentError
from ...core.observability import MetricUnit, logger, metrics
from .clients import FullLoadClients, Json
from .precheck import NEVER_PROCESSED
from .retention import _guard, _iso

ENABLE_TIMEOUT_SECONDS = 15 * 60


# ---- handover ----------------------------------------------------------------------------------------------
def enable_replication(plan_: Json, pre: Json, export: Json, clients: FullLoadClients) -> Json:
    """Enable the replicator's event source, unless the stream retention no longer allows a gap-free start."""
    now = clients.now_ms()
    verdict = _guard(plan_, int(export["exportTime"]), now, pre)
    out: Json = {"uuid": pre["mappingUuid"], "retention": verdict}
    mapping = clients.lambda_.get_event_source_mapping(UUID=pre["mappingUuid"])
    if mapping.get("State") == "Disabled" and mapping.get("LastProcessingResult") not in NEVER_PROCESSED:
        raise PermanentError(
            "MappingChanged",
            f"the event source mapping {pre['mappingUuid']} processed records "
            "during the full load; its position is no longer TRIM_HORIZON",
        )
    state = clients.lambda_.update_event_source_mapping(UUID=pre["mappingUuid"], Enabled=True)["State"]
    lag_minutes = round((now - int(export["exportTime"])) / 60000, 1)
    out.update(
        {
            "state": state,
            "enabledAt": now,
            "enabledAtIso": _iso(now),
            "minutesAfterExport": lag_minutes,
            "deadline": now + ENABLE_TIMEOUT_SECONDS * 1000,
        }
    )
    metrics.add_metric(name="FullLoadHandoverMinutesToSpare", unit=MetricUnit.Count, value=verdict["minutesLeft"])
    logger.info("live replication enabled", extra={"uuid": pre["mappingUuid"], "state": state})
    return out


def describe_replication(replication: Json, clients: FullLoadClients) -> Json:
    """The event source's state after enabling (Enabling -> Enabled), TIMED_OUT past the deadline."""
    state = clients.lambda_.get_event_source_mapping(UUID=replication["uuid"])["State"]
    out = {**replication, "state": state}
    if state != "Enabled" and clients.now_ms() > int(replication["deadline"]):
        out["state"] = "TIMED_OUT"
        out["message"] = (
            f"The event source mapping {replication['uuid']} is still {state} "
            f"{ENABLE_TIMEOUT_SECONDS // 60} min after it was enabled: check it in the Lambda console "
            "(permissions on the stream, the function's state) and enable it by hand; the stream "
            "still holds the changes until the handover deadline."
        )
    return out
