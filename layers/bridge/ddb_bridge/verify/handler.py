"""verify's dispatch: plan, scan, recheck, repair, report, summarize; errors classified for Retry/Catch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3

from ..core.access import TargetAccess
from ..core.clients import client_config
from ..core.errors import PermanentError
from ..core.observability import MetricUnit, logger, metrics
from ..core.steps import call_budget, step_errors
from ..loads.stepinput import Kind, check
from .clients import Json, VerifyClients
from .plan import plan
from .progress import CLASSES, SIDES, VerifyStore, done, part, progress_of, to_recheck
from .recheck import json_or, recheck_segment
from .repair import repair_segment
from .report import Parts, write_report
from .scan import scan_segment
from .settings import VerifySettings, load_verify_settings

_SEGMENT: dict[str, Kind] = {
    "verifyId": "text",
    "side": "text",
    "segment": "whole",
    "totalSegments": "whole",
    "pageSize": "whole?",
    "callSeconds": "number?",
    "sampleSize": "whole?",
    "ignore": "list?",
    "keys": "list?",
    "sourceReadUnitsPerSecond": "number?",
    "targetReadUnitsPerSecond": "number?",
    "targetWriteUnitsPerSecond": "number?",
    "calls": "whole?",
}
# What each verify step reads of the input the workflow hands it.
VERIFY_FIELDS: dict[str, dict[str, Kind]] = {
    "plan": {},  # the plan step judges the execution input itself, and answers with a readable verdict
    "scan": _SEGMENT,
    "differences": {"plan.verifyId": "text"},
    "recheck": _SEGMENT,
    "repair": _SEGMENT,
    "report": {"plan.verifyId": "text", "report": "object?"},
    "summarize": {"plan.verifyId": "text", "plan.sampleSize": "whole?", "report": "object?"},
}


def check_step(action: str, event: Json) -> None:
    """The step's input, by field: types, then a side and a segment of the plan, a page size DynamoDB takes."""
    check(action, event, VERIFY_FIELDS[action])
    if VERIFY_FIELDS[action] is not _SEGMENT:
        return
    if event["side"] not in SIDES:
        raise PermanentError("BadStepInput", f"step {action!r}: field side must be 'source' or 'target'")
    if not 1 <= event["totalSegments"] <= 1_000_000 or not 0 <= event["segment"] < event["totalSegments"]:
        raise PermanentError(
            "BadStepInput", f"step {action!r}: field segment must be from 0 to totalSegments - 1 (at most 1000000)"
        )
    page = event.get("pageSize")
    if page is not None and not 1 <= page <= 10_000:
        raise PermanentError("BadStepInput", f"step {action!r}: field pageSize must be from 1 to 10000")


def _checkpoints(settings: VerifySettings, clients: VerifyClients, verify_id: str) -> tuple[Json, dict[str, Json]]:
    store = VerifyStore(clients.source, settings.progress_table)
    header = store.read_header(verify_id)
    if header is None:
        raise PermanentError("VerifyUnknown", f"verify {verify_id} has no header in {settings.progress_table}")
    return header, store.all(verify_id, int(header["totalSegments"]))


def _unfinished(header: Json, checkpoints: dict[str, Json]) -> list[str]:
    stages = ["scan", "recheck"] + (["repair"] if header.get("repair") else [])
    n = int(header["totalSegments"])
    every = [(stage, side, s) for stage in stages for side in SIDES for s in range(n)]
    return [part(*p) for p in every if not done(checkpoints, *p)]


def unfinished_error(verify_id: str, parts: list[str]) -> PermanentError:
    """Parts that did not finish (their child executions say why), and how to resume."""
    return PermanentError(
        "SegmentsUnfinished",
        f"{len(parts)} parts of verify {verify_id} did not finish ({parts[:10]}); see their child executions for "
        f"the error, then start a new execution with verifyId {verify_id!r} to resume",
    )


def differences(event: Json, settings: VerifySettings, clients: VerifyClients) -> Json:
    """After both passes: which sides' segments found candidates (the recheck visits only those)."""
    header, checkpoints = _checkpoints(settings, clients, event["plan"]["verifyId"])
    n = int(header["totalSegments"])
    unscanned = [part("scan", side, s) for side in SIDES for s in range(n) if not done(checkpoints, "scan", side, s)]
    if unscanned:
        raise unfinished_error(event["plan"]["verifyId"], unscanned)
    work = to_recheck(checkpoints, n)
    scans = [checkpoints.get(part("scan", side, s), {}) for side in SIDES for s in range(n)]
    candidates = sum(int(c.get("candidates", 0)) for c in scans)
    return {"work": work, "candidates": candidates}


def report(event: Json, settings: VerifySettings, clients: VerifyClients, *, budget_seconds: float) -> Json:
    """Merge the parts into the report (as many calls as it takes); returns where it stands."""
    plan_ = event["plan"]
    header, checkpoints = _checkpoints(settings, clients, plan_["verifyId"])
    unfinished = _unfinished(header, checkpoints)
    if unfinished:
        raise unfinished_error(plan_["verifyId"], unfinished)
    counts = {
        (side, s): int(checkpoints.get(part("scan", side, s), {}).get("parts", 0))
        for side in SIDES
        for s in range(int(header["totalSegments"]))
    }
    parts = Parts(clients.s3, settings.report_bucket, settings.report_prefix, plan_["verifyId"])
    started = clients.now()
    state = write_report(
        parts,
        "repaired" if header.get("repair") else "rechecked",
        counts,
        event.get("report") or {},
        lambda: budget_seconds - (clients.now() - started),
    )
    return {**state, "uri": f"s3://{settings.report_bucket}/{parts.report_key}"}


def summarize(event: Json, settings: VerifySettings, clients: VerifyClients) -> Json:
    """The execution's output: counts, samples, the report's address; records the verify's end."""
    plan_ = event["plan"]
    verify_id = plan_["verifyId"]
    header, checkpoints = _checkpoints(settings, clients, verify_id)
    n = int(header["totalSegments"])
    progress = progress_of({**header, "finishedAt": 1}, checkpoints)
    samples: dict[str, list[Json]] = {c: [] for c in CLASSES}
    size = int(plan_.get("sampleSize", 10))
    for side in SIDES:
        for s in range(n):
            found = json_or(checkpoints.get(part("recheck", side, s), {}).get("samples"), {})
            for kind, keys in found.items():
                samples[kind].extend(keys[: max(0, size - len(samples[kind]))])
    finished = clients.now()
    started_ms = int(header["startedAt"])
    changed = sum(
        int(checkpoints.get(part("repair", side, s), {}).get("targetChanged", 0)) for side in SIDES for s in range(n)
    )
    seconds = max(0.001, finished - started_ms / 1000)
    different = progress.missing + progress.extra + progress.different
    out = {
        "verifyId": verify_id,
        "startedAt": started_ms,
        "finishedAt": int(finished * 1000),
        "seconds": round(seconds, 3),
        "compared": progress.compared,
        "equal": progress.compared - different - progress.in_flight,
        "missing": progress.missing,
        "extra": progress.extra,
        "different": progress.different,
        "inFlight": progress.in_flight,
        "repaired": progress.repaired,
        "clean": different == 0,
        "samples": samples,
        "report": (event.get("report") or {}).get("uri"),
        "settled": progress.settled,
        "unrepaired": progress.unrepaired + changed,
        "segments": n,
        "mode": settings.mode,
        "itemsPerSecond": round(progress.compared / seconds, 1),
    }
    if len(json.dumps(out)) > 200_000:  # Step Functions' 256 KB payload limit: huge keys, few samples
        out["samples"] = {c: v[:1] for c, v in samples.items()}
    VerifyStore(clients.source, settings.progress_table).finish(verify_id, out["finishedAt"])
    for name, value in (("VerifyItemsCompared", out["compared"]), ("VerifyDifferences", different)):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    metrics.add_metric(name="VerifyInFlight", unit=MetricUnit.Count, value=out["inFlight"])
    metrics.add_metric(name="VerifyItemsPerSecond", unit=MetricUnit.CountPerSecond, value=out["itemsPerSecond"])
    logger.info("verify done", extra={k: v for k, v in out.items() if k != "samples"})
    return out


def run_action(
    event: Json, settings: VerifySettings, clients: VerifyClients, *, owner: str, budget_seconds: float
) -> Json:
    """One step of the workflow; AWS errors become RetryableError (retried) or PermanentError (fail)."""
    action = event.get("action")
    if action not in VERIFY_FIELDS:
        raise PermanentError(
            "UnknownAction",
            f"unknown action {action!r}; expected plan, scan, differences, recheck, repair, report or summarize",
        )
    check_step(str(action), event)
    budget = min(budget_seconds, float(event.get("callSeconds") or budget_seconds))
    with step_errors(clients.target.refresh):
        if action == "plan":
            return plan(event, settings, clients)
        if action == "scan":
            return scan_segment(event, settings, clients, owner=owner, budget_seconds=budget)
        if action == "differences":
            return differences(event, settings, clients)
        if action == "recheck":
            return recheck_segment(event, settings, clients, owner=owner, budget_seconds=budget)
        if action == "repair":
            return repair_segment(event, settings, clients, owner=owner, budget_seconds=budget)
        if action == "report":
            return report(event, settings, clients, budget_seconds=budget)
        if action == "summarize":
            return summarize(event, settings, clients)
    raise AssertionError(f"no branch for action {action!r}")


@dataclass
class Runtime:
    """What a warm verify function keeps between invocations."""

    settings: VerifySettings
    clients: VerifyClients


@cache
def runtime() -> Runtime:
    """Settings and clients, built once per cold start; a bad setting fails here with its name."""
    settings = load_verify_settings()
    config = client_config(max_attempts=8, pool=settings.read_concurrency + 4)
    source = boto3.client("dynamodb", region_name=settings.source_region, config=config)
    s3 = boto3.client("s3", region_name=settings.source_region, config=config)
    target = TargetAccess.of(settings.target, settings.peer)
    return Runtime(settings, VerifyClients(source=source, s3=s3, target=target))


def handle(event: Json, context: Any) -> Json:
    """One workflow step; a call stops a minute before the function's timeout."""
    rt = runtime()
    logger.append_keys(action=event.get("action"), verifyId=event.get("verifyId"), side=event.get("side"))
    return run_action(event, rt.settings, rt.clients, owner=context.aws_request_id, budget_seconds=call_budget(context))
