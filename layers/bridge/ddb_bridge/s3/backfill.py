"""bucket_backfill's steps (statemachine/bucket_backfill.asl.json): plan key ranges, copy a range, sum up.

Each range is walked page by page (listing.py): an object missing from the target, or whose content
differs (checksums.py), is copied with the replicator's copier; identical ones are skipped. Target
objects absent from the source are deleted only when asked (`deleteExtra`), never in a dry run, never
past the run's cap, and only after a HEAD shows the source really has no such key (live replication may
have created it since the listing). Every page checkpoints in the progress table; an object larger than
one call copies keeps its upload in the checkpoint, so the next call resumes its parts.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import ClientError

from ..core.access import TargetAccess
from ..core.clients import client_config
from ..core.errors import PermanentError, RetryableError
from ..core.observability import MetricUnit, logger, metrics
from ..core.steps import call_budget, step_errors
from .checksums import same_content, same_listing
from .copy import CopierRuntime, ObjectCopier
from .failures import SourceChanged, classify_s3, is_no_such_upload
from .keys import target_key
from .listing import plan_ranges, walk
from .progress import COUNTERS, RangeProgress
from .settings import load_bucket_settings

Json = dict[str, Any]
_ID_RE = re.compile(r"^[\w.-]{1,80}$")
SAMPLES = 10


# ---- plan ----------------------------------------------------------------------------------------------------
def _options(raw: Json) -> Json:
    """The run's options, validated; PermanentError("InvalidInput") naming the bad one."""

    def number(name: str, default: int, low: int, high: int) -> int:
        value = raw.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise PermanentError("InvalidInput", f"{name} must be a whole number from {low} to {high}")
        return value

    def flag(name: str, default: bool) -> bool:
        value = raw.get(name, default)
        if not isinstance(value, bool):
            raise PermanentError("InvalidInput", f"{name} must be true or false")
        return value

    delete_extra = flag("deleteExtra", False)
    return {
        "ranges": number("ranges", 8, 1, 1000),
        "maxConcurrency": number("maxConcurrency", number("ranges", 8, 1, 1000), 1, 1000),
        "pageSize": number("pageSize", 1000, 1, 1000),
        "callSeconds": number("callSeconds", 600, 1, 840),
        "deleteExtra": delete_extra,
        "dryRun": flag("dryRun", delete_extra),  # asking for deletes without dryRun=false only counts them
        "deleteCap": number("deleteCap", 1000, 0, 10_000_000),
    }


def plan(event: Json, rt: Runtime) -> Json:
    """Check the input, split the source into key ranges (or reuse a stored plan), return the Map's items."""
    raw = event.get("input")
    if raw is None:
        raw = {}
    try:
        if not isinstance(raw, dict):
            raise PermanentError("InvalidInput", "the execution input must be a JSON object")
        backfill_id = raw.get("backfillId") or event.get("execution") or f"s3-{int(time.time())}"
        if not isinstance(backfill_id, str) or not _ID_RE.match(backfill_id):
            raise PermanentError("InvalidInput", "backfillId must be 1-80 characters of A-Z a-z 0-9 _ . -")
        options = _options(raw)
    except PermanentError as error:
        return {"valid": False, "message": str(error)}
    pair = rt.settings.buckets
    stored = rt.progress.existing(backfill_id)  # a restarted run keeps its first plan's ranges
    ranges = stored or plan_ranges(rt.source_s3, pair.source_bucket, pair.source_prefix, options["ranges"])
    header = rt.progress.header(backfill_id, ranges)
    logger.info("bucket backfill planned", extra={"backfillId": backfill_id, "ranges": len(header["ranges"])})
    return {
        "valid": True,
        "backfillId": backfill_id,
        "resumed": not header["new"],
        "ranges": header["ranges"],
        "options": options,
        "maxConcurrency": options["maxConcurrency"],
        "startedAt": time.time(),
    }


# ---- copy one range ------------------------------------------------------------------------------------------
class _Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def _fail(state: Json, entry: Json, error: PermanentError) -> None:
    key = entry["Key"]
    state["failed"] += 1
    state["bytesFailed"] += int(entry.get("Size") or 0)
    if len(state["failures"]) < SAMPLES:
        state["failures"].append({"key": key, "reason": error.reason, "error": str(error)[:300]})


def _settled(copier: ObjectCopier, key: str, dest: str, etag: str) -> str | None:
    """After a copy, read the source again: live replication may have deleted or replaced it meanwhile.

    "gone": the source is absent, so the copy just made is deleted (a late copy must not resurrect an
    object whose delete was already replicated); "changed": copy again; None: the copy stands.
    """
    now = copier.head_source(key)
    if now is None:
        copier.delete_target(dest)
        return "gone"
    return "changed" if now.etag != etag else None


def _copy_small(rt: Runtime, copier: ObjectCopier, entry: Json, other: Json | None) -> tuple[str, int]:
    """One object: ("copied"|"skipped"|"gone"|"large", bytes). Raises PermanentError for this object alone."""
    key = entry["Key"]
    dest = target_key(rt.settings.buckets, key)
    if other is None and copier.can_copy_listed(entry):
        with suppress(SourceChanged):  # changed since the listing: the HEAD path below copies it as it is now
            size = copier.copy_listed(key, dest, entry)
            verdict = _settled(copier, key, dest, str(entry["ETag"]).strip('"'))
            if verdict is None:
                return "copied", size
            if verdict == "gone":
                return "gone", 0
    for _ in range(3):
        source = copier.head_source(key)
        if source is None:
            return "gone", 0  # deleted since the listing: live replication deletes it on the target
        if other is not None:
            target = copier.head_target(dest)
            if target is not None and same_content(source, target):
                return "skipped", source.size
        if source.size > rt.settings.copy.inline_max:
            return "large", source.size
        try:
            size = copier.copy(key, dest, source)
        except SourceChanged:
            continue
        verdict = _settled(copier, key, dest, source.etag)
        if verdict is None:
            return "copied", size
        if verdict == "gone":
            return "gone", 0
    raise RetryableError("SourceChurning", f"{key} kept changing while it was copied")


def _run_job(copier: ObjectCopier, job: Json, budget: _Budget, seconds_per_part: float) -> str:
    """Copy the job's missing parts while the budget lasts, then complete it: "done", "waiting" or "gone"."""
    try:
        have = set(copier.uploaded_parts(job))
    except ClientError as exc:
        if is_no_such_upload(exc):
            return "gone"
        raise
    todo = [n for n in range(1, int(job["parts"]) + 1) if n not in have]
    batch = max(1, copier.options.concurrency)
    for i in range(0, len(todo), batch):
        if i and budget.left() < seconds_per_part:
            return "waiting"  # at least one batch of parts per call, however short the budget
        chunk = todo[i : i + batch]
        for n in chunk:
            copier.copy_parts(job, n, n, skip=have)
        have.update(chunk)
    outcome = copier.complete(job)
    if outcome == "done" and _settled(copier, job["sourceKey"], job["targetKey"], job["etag"]) is not None:
        return "restart"  # deleted or replaced while it was completed: the next pass sees it as it is now
    return outcome


def copy_range(event: Json, rt: Runtime, *, owner: str, budget_seconds: float) -> Json:
    """Copy part of one range (from its checkpoint) until it ends or the budget is spent; returns its progress."""
    backfill_id, rng, options = event["backfillId"], event["range"], event["options"]
    budget = _Budget(min(budget_seconds, float(options.get("callSeconds", budget_seconds))))
    state = rt.progress.claim(backfill_id, int(rng["range"]), owner, lease_s=budget.left() + 120)
    try:
        if not state["done"]:
            _advance(rt, backfill_id, rng, options, state, budget, owner)
    finally:
        rt.progress.release(backfill_id, int(rng["range"]), owner)
    return {
        "range": rng["range"],
        **{c: state[c] for c in COUNTERS},
        "done": state["done"],
        "failures": state["failures"],
    }


def _advance(rt: Runtime, backfill_id: str, rng: Json, options: Json, state: Json, budget: _Budget, owner: str) -> None:
    copier = rt.copier()
    pair = rt.settings.buckets
    part_seconds = 2.0
    save = lambda: rt.progress.save(backfill_id, int(rng["range"]), owner, state)  # noqa: E731
    if state["job"]:
        job = state["job"]
        try:
            outcome = _run_job(copier, job, budget, part_seconds)
        except SourceChanged:
            copier.abort(job)
            outcome = "restart"
        if outcome == "waiting":
            save()
            return
        if outcome == "done":
            state["copied"] += 1
            state["bytesCopied"] += int(job["size"])
        if outcome != "restart":
            state["after"] = job["sourceKey"]
        state["job"] = None
        save()
    for page in walk(rt.source_s3, copier.target, pair, rng, after=state["after"], page_size=int(options["pageSize"])):
        state["listed"] += len(page.source)
        todo = [(e, page.target.get(e["Key"])) for e in page.source]
        quick = [(e, o) for e, o in todo if o is not None and same_listing(e, o)]
        for entry, _ in quick:
            state["skipped"] += 1
            state["bytesSkipped"] += int(entry["Size"])
        rest = [(e, o) for e, o in todo if o is None or not same_listing(e, o)]

        def one(item: tuple[Json, Json | None]) -> tuple[str, int] | PermanentError:
            try:
                return _copy_small(rt, copier, item[0], item[1])
            except Exception as exc:  # classified: a permanent error fails this object only
                verdict = classify_s3(exc)
                if isinstance(verdict, RetryableError):
                    raise verdict from exc
                return verdict

        large: list[Json] = []
        with ThreadPoolExecutor(max_workers=max(1, min(rt.settings.copy.concurrency, len(rest) or 1))) as pool:
            for (entry, _), result in zip(rest, pool.map(one, rest), strict=True):
                if isinstance(result, PermanentError):
                    _fail(state, entry, result)
                elif result[0] == "copied":
                    state["copied"] += 1
                    state["bytesCopied"] += result[1]
                elif result[0] == "skipped":
                    state["skipped"] += 1
                    state["bytesSkipped"] += result[1]
                elif result[0] == "large":
                    large.append(entry)
        if options["deleteExtra"] and page.extra:
            _delete_extra(rt, copier, backfill_id, options, state, page.extra)
        previous = {e["Key"]: (page.source[i - 1]["Key"] if i else None) for i, e in enumerate(page.source)}
        for entry in large:
            source = copier.head_source(entry["Key"])
            if source is None:
                continue
            job = copier.start(entry["Key"], target_key(pair, entry["Key"]), source)
            state["job"] = job
            state["after"] = previous[entry["Key"]] or state["after"]
            save()
            try:
                outcome = _run_job(copier, job, budget, part_seconds)
            except SourceChanged as exc:
                copier.abort(job)
                raise RetryableError("SourceChanged", f"{entry['Key']} changed during its copy; retrying") from exc
            if outcome == "waiting":
                return  # the checkpoint keeps the upload; the next call resumes its parts
            if outcome == "restart":
                raise RetryableError("SourceChanged", f"{entry['Key']} changed during its copy; retrying")
            state["copied"] += 1
            state["bytesCopied"] += int(job["size"])
            state["job"] = None
        state["after"] = page.last
        state["done"] = page.done
        save()
        if budget.left() <= 0:
            return


def _delete_extra(
    rt: Runtime, copier: ObjectCopier, backfill_id: str, options: Json, state: Json, keys: list[str]
) -> None:
    pair = rt.settings.buckets
    gone = [k for k in keys if copier.head_source(k) is None]
    if not gone:
        return
    if options["dryRun"] or not rt.progress.reserve_deletes(backfill_id, len(gone), int(options["deleteCap"])):
        state["wouldDelete"] += len(gone)
        return
    for key in gone:
        copier.delete_target(target_key(pair, key))
    state["deleted"] += len(gone)


# ---- sum up --------------------------------------------------------------------------------------------------
def summarize(event: Json) -> Json:
    """Totals over the ranges for the execution's output; fails, naming them, if a range did not finish."""
    plan_ = event["plan"]
    results = [r for r in event.get("ranges") or [] if isinstance(r, dict)]
    unfinished = sorted(
        {int(r["range"]) for r in plan_["ranges"]} - {int(r["range"]) for r in results if r.get("done")}
    )
    if unfinished:
        raise PermanentError(
            "RangesUnfinished",
            f"{len(unfinished)} key ranges did not finish ({unfinished[:20]}); start a new execution with backfillId "
            f"{plan_['backfillId']!r} to resume: finished ranges and pages are not copied again.",
        )
    seconds = max(0.001, time.time() - float(plan_["startedAt"]))
    out: Json = {"backfillId": plan_["backfillId"], "ranges": len(results), "seconds": round(seconds, 3)}
    for name in COUNTERS:
        out[name] = sum(int(r.get(name, 0)) for r in results)
    out["dryRun"] = bool(plan_["options"].get("dryRun"))
    out["objectsPerSecond"] = round((out["copied"] + out["skipped"]) / seconds, 1)
    out["failures"] = [f for r in results for f in r.get("failures", [])][:SAMPLES]
    metrics.add_metric(name="BucketBackfillObjectsCopied", unit=MetricUnit.Count, value=out["copied"])
    metrics.add_metric(name="BucketBackfillObjectsFailed", unit=MetricUnit.Count, value=out["failed"])
    return out


# ---- the Lambda ----------------------------------------------------------------------------------------------
@dataclass
class Runtime(CopierRuntime):
    """What a warm bucket_backfill keeps between invocations: the bucket function's, and the progress table."""

    progress: RangeProgress


@cache
def runtime() -> Runtime:
    """Settings and clients, built once per cold start; a bad setting fails here with its name."""
    settings = load_bucket_settings().require_backfill()
    config = client_config(max_attempts=8, pool=settings.copy.concurrency * 2 + 4)
    region = settings.source_region
    assert settings.progress_table
    return Runtime(
        settings=settings,
        access=TargetAccess.of(settings.target, settings.peer),
        source_s3=boto3.client("s3", region_name=region, config=config),
        progress=RangeProgress(boto3.client("dynamodb", region_name=region, config=config), settings.progress_table),
    )


def _logged(exc: BaseException) -> PermanentError | RetryableError:
    """Log an unexpected error of a step (with its traceback), then classify it."""
    logger.exception("step failed", extra={"error": str(exc)[:300]})
    return classify_s3(exc)


def run_action(event: Json, rt: Runtime, *, owner: str, budget_seconds: float) -> Json:
    """One step; AWS errors become RetryableError (the state retries) or PermanentError (the run fails)."""
    action = event.get("action")
    with step_errors(rt.access.refresh, _logged):
        if action == "plan":
            return plan(event, rt)
        if action == "copy":
            return copy_range(event, rt, owner=owner, budget_seconds=budget_seconds)
        if action == "summarize":
            return summarize(event)
    raise PermanentError("UnknownAction", f"unknown action {action!r}; expected plan, copy or summarize")


def handle(event: Json, context: Any) -> Json:
    """One workflow step; a copy call stops a minute before the function's timeout."""
    rt = runtime()
    logger.append_keys(action=event.get("action"), backfillId=event.get("backfillId"))
    return run_action(event, rt, owner=context.aws_request_id, budget_seconds=call_budget(context))
