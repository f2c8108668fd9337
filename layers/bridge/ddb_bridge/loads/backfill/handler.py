"""backfill's dispatch: plan, copy or summarize, errors classified for Retry/Catch."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3

from ...core.access import TargetAccess
from ...core.clients import client_config
from ...core.errors import PermanentError
from ...core.observability import MetricUnit, logger, metrics
from ...core.parking import ParkingLot
from ...core.steps import call_budget, step_errors
from ..settings import BackfillSettings, load_backfill_settings
from ..stepinput import BACKFILL_FIELDS, check, check_backfill_copy
from .clients import BackfillClients, Json
from .copy import copy_segment
from .plan import plan


# ---- dispatch, the Lambda ----------------------------------------------------------------------------------
def summarize(event: Json, clients: BackfillClients) -> Json:
    """Totals over the segments, for the execution's output; fails when a segment did not finish."""
    plan_ = event["plan"]
    raw = event.get("segments") or []
    results = [r for r in raw if isinstance(r, dict)]
    unfinished = sorted(
        {int(s["segment"]) for s in plan_.get("segments", [])} - {int(r["segment"]) for r in results if r.get("done")}
    )
    if unfinished:
        raise PermanentError(
            "SegmentsUnfinished",
            f"{len(unfinished)} of {len(raw) or len(unfinished)} segments did not finish ({unfinished[:20]}); see "
            f"their child executions for the error. Start a new execution with backfillId "
            f"{plan_['backfillId']!r} to resume: finished segments and pages are not copied again.",
        )
    seconds = max(0.001, clients.now() - float(plan_["startedAt"]))
    copied = sum(int(r.get("copied", 0)) for r in results)
    skipped = sum(int(r.get("skipped", 0)) for r in results)
    out = {
        "backfillId": plan_["backfillId"],
        "writeMode": plan_["writeMode"],
        "segments": len(results),
        "segmentsDone": sum(1 for r in results if r.get("done")),
        "copied": copied,
        "skipped": skipped,
        "parked": sum(int(r.get("parked", 0)) for r in results),
        "scanned": sum(int(r.get("scanned", 0)) for r in results),
        "calls": sum(int(r.get("calls", 0)) for r in results),
        "writeRequests": sum(int(r.get("writeRequests", 0)) for r in results),
        "seconds": round(seconds, 3),
        "itemsPerSecond": round((copied + skipped) / seconds, 1),
        "perSegment": [
            {
                "segment": r.get("segment"),
                "copied": r.get("copied"),
                "skipped": r.get("skipped"),
                "calls": r.get("calls"),
            }
            for r in results
        ],
    }
    metrics.add_metric(name="BackfillItemsPerSecond", unit=MetricUnit.CountPerSecond, value=out["itemsPerSecond"])
    return out


def run_action(
    event: Json, settings: BackfillSettings, clients: BackfillClients, *, owner: str, budget_seconds: float
) -> Json:
    """One step of the workflow; AWS errors become RetryableError (retried) or PermanentError (fail)."""
    action = event.get("action")
    if action == "copy":
        check_backfill_copy(event)
    elif action in BACKFILL_FIELDS:
        check(str(action), event, BACKFILL_FIELDS[str(action)])
    with step_errors(clients.target.refresh):
        if action == "plan":
            return plan(event, settings, clients)
        if action == "copy":
            budget = min(budget_seconds, float(event.get("callSeconds") or budget_seconds))
            return copy_segment(event, settings, clients, owner=owner, budget_seconds=budget)
        if action == "summarize":
            return summarize(event, clients)
    raise PermanentError("UnknownAction", f"unknown action {action!r}; expected plan, copy or summarize")


@dataclass
class Runtime:
    """What a warm backfill function keeps between invocations."""

    settings: BackfillSettings
    clients: BackfillClients


@cache
def runtime() -> Runtime:
    """Settings and clients, built once per cold start; a bad setting fails here with its name."""
    settings = load_backfill_settings()
    config = client_config(max_attempts=8, pool=8)
    source = boto3.client("dynamodb", region_name=settings.source_region, config=config)
    parking = (
        ParkingLot(settings.parking_queue_url, source="backfill", region=settings.source_region)
        if settings.parking_queue_url
        else None
    )
    target = TargetAccess.of(settings.target, settings.peer)
    return Runtime(settings, BackfillClients(source=source, target=target, parking=parking))


def handle(event: Json, context: Any) -> Json:
    """One workflow step; a copy call stops a minute before the function's timeout."""
    rt = runtime()
    logger.append_keys(action=event.get("action"), backfillId=event.get("backfillId"))
    return run_action(event, rt.settings, rt.clients, owner=context.aws_request_id, budget_seconds=call_budget(context))
