"""bucket_replicator's domain: a batch of SQS messages (bucket events) -> the target bucket, with partial failures.

Each event is a hint: the key is brought in line with the source object as it is *now* (HEAD), so
duplicate, late and out-of-order events converge. Per key, the highest sequencer applied is kept
(sequencers.py) and older events are dropped. A created key is copied unless the target already holds
the same content (checksums.py); a removed key is deleted from the target only if the source has no such
object any more. After a copy or delete the source is read again: if it changed meanwhile, the key is
synced again, so a slow copy of an old version can never be the last word.
Objects larger than one invocation copies are split into part ranges sent back to the queue as tasks;
the task that finds every part uploaded completes the upload.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch import EventType
from botocore.exceptions import ClientError

from ..core.access import TargetAccess
from ..core.batch import park_or_fail, publish, settle
from ..core.clients import client_config
from ..core.errors import CREDENTIAL_CODES, PermanentError, RetryableError
from ..core.observability import logger
from ..core.parking import ParkingLot
from .checksums import same_object
from .copy import CopierRuntime, ObjectCopier
from .events import CREATED, ObjectEvent, PartsTask, newer, parse_body, sequencer_key
from .failures import SourceChanged, classify_s3, is_no_such_upload
from .keys import target_key
from .sequencers import SequencerStore
from .settings import BucketSettings, load_bucket_settings

Json = dict[str, Any]
SYNC_ATTEMPTS = 3


@dataclass
class BatchReport:
    """What one batch did; logged, sent as metrics, and handed to listeners (the local harness)."""

    messages: int = 0
    events: int = 0
    copied: int = 0
    bytes_copied: int = 0
    skipped_identical: int = 0
    deleted: int = 0
    stale: int = 0
    split: int = 0
    parts_tasks: int = 0
    parked: int = 0
    failed: int = 0
    lags_ms: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        """Add to counters (keys run on several threads)."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


report_listeners: list[Callable[[BatchReport], None]] = []


@dataclass
class Replicator:
    """The clients and settings one batch works with."""

    settings: BucketSettings
    copier: ObjectCopier
    sequencers: SequencerStore | None
    sqs: Any  # sends split-copy tasks to the work queue

    # ---- one key ---------------------------------------------------------------------------------------------
    def sync_key(self, event: ObjectEvent, report: BatchReport) -> None:
        """Make the target object of `event.key` equal the source object as it is now."""
        pair = self.settings.buckets
        if event.bucket != pair.source_bucket:
            raise PermanentError(
                "UnexpectedBucket", f"event for bucket {event.bucket!r}, expected {pair.source_bucket!r}"
            )
        dest = target_key(pair, event.key)
        if self.sequencers and event.sequencer:
            last = self.sequencers.latest(pair.source_bucket, event.key)
            if last is not None and sequencer_key(event.sequencer) <= last:
                report.add(stale=1)  # an event older than (or the same as) one already applied
                return
        for _ in range(SYNC_ATTEMPTS):
            if self._sync_once(event, dest, report):
                break
        else:
            raise RetryableError("SourceChurning", f"{event.key} kept changing while it was copied; will retry")
        if self.sequencers and event.sequencer:
            self.sequencers.record(pair.source_bucket, event.key, event.sequencer)

    def _sync_once(self, event: ObjectEvent, dest: str, report: BatchReport) -> bool:
        """One pass; False when the source changed under it (the caller syncs again)."""
        copier = self.copier
        source = copier.head_source(event.key)
        if source is None:
            copier.delete_target(dest)
            after = copier.head_source(event.key)
            if after is not None:
                return False  # re-created meanwhile: copy it
            report.add(deleted=1)
            self._lag(event, report)
            return True
        target = copier.head_target(dest)
        if target is not None and same_object(source, target, tags=self.settings.copy.copy_tags):
            report.add(skipped_identical=1)
            return True
        if source.size > self.settings.copy.inline_max:
            self.split(event, dest, source, report)
            return True
        try:
            report.add(bytes_copied=copier.copy(event.key, dest, source))
        except SourceChanged:
            return False
        after = copier.head_source(event.key)
        if after is None or after.etag != source.etag:
            return False
        report.add(copied=1)
        self._lag(event, report)
        return True

    def _lag(self, event: ObjectEvent, report: BatchReport) -> None:
        if event.event_ms:
            with report._lock:
                report.lags_ms.append(max(0, int(time.time() * 1000) - event.event_ms))

    # ---- large objects: split into tasks ---------------------------------------------------------------------
    def split(self, event: ObjectEvent, dest: str, source: Any, report: BatchReport) -> None:
        """Start the upload and queue its part ranges as tasks; other invocations copy and complete it."""
        queue = self.settings.work_queue_url
        if not queue:
            raise PermanentError("NoWorkQueue", f"{event.key} needs a split copy but WORK_QUEUE_URL is not set")
        job = self.copier.start(event.key, dest, source, event_ms=event.event_ms)
        step = self.settings.copy.parts_per_task
        bodies = [
            json.dumps({"ddbBridgeParts": {"job": job, "first": first, "last": min(first + step - 1, job["parts"])}})
            for first in range(1, job["parts"] + 1, step)
        ]
        try:
            for i in range(0, len(bodies), 10):
                entries = [{"Id": str(n), "MessageBody": b} for n, b in enumerate(bodies[i : i + 10])]
                sent = self.sqs.send_message_batch(QueueUrl=queue, Entries=entries)
                if sent.get("Failed"):
                    raise RetryableError("TaskQueueFailed", f"could not queue {len(sent['Failed'])} part tasks")
        except Exception:
            self.copier.abort(job)  # nothing half-queued stays behind
            raise
        report.add(split=1)
        logger.info("split copy queued", extra={"parts": job["parts"], "tasks": len(bodies), "size": job["size"]})

    def run_parts(self, task: PartsTask, report: BatchReport) -> None:
        """Copy one task's part range (resuming from ListParts), then complete the upload if every part is in."""
        report.add(parts_tasks=1)
        job = task.job
        try:
            parts = self.copier.uploaded_parts(job)
        except ClientError as exc:
            if is_no_such_upload(exc):
                return  # completed by another task, or aborted because the source changed (its own event follows)
            raise
        try:
            report.add(bytes_copied=self.copier.copy_parts(job, task.first, task.last, skip=parts))
            if self.copier.complete(job) == "done":
                report.add(copied=1)
                self._lag(ObjectEvent("", "", "", "", int(job.get("eventMs") or 0), ""), report)
        except SourceChanged:
            self.copier.abort(job)
            # the source changed under the copy: bring the key in line with its current state instead
            resync = ObjectEvent(
                job["sourceBucket"], job["sourceKey"], CREATED, "", int(job.get("eventMs") or 0), "Resync"
            )
            self.sync_key(resync, report)


# ---- a batch --------------------------------------------------------------------------------------------------
def replicate_batch(
    records: list[Json], *, replicator: Replicator, parking: ParkingLot
) -> tuple[set[int], BatchReport]:
    """Apply a batch of SQS records; returns the ids of the records to report as failed, and the report."""
    report = BatchReport(messages=len(records))
    failed: set[int] = set()
    parked: set[int] = set()
    by_key: dict[tuple[str, str], tuple[ObjectEvent, list[Json]]] = {}
    tasks: list[tuple[PartsTask, Json]] = []
    settings = replicator.settings
    for record in records:
        try:
            items = parse_body(record.get("body", ""), eventbridge_keys_encoded=settings.eventbridge_keys_encoded)
        except PermanentError as error:
            report.add(parked=int(park_or_fail(parking, record, error, failed, parked)))
            continue
        for item in items:
            if isinstance(item, PartsTask):
                tasks.append((item, record))
                continue
            report.add(events=1)
            slot = (item.bucket, item.key)
            if slot in by_key:
                best, members = by_key[slot]
                members.append(record)
                if item.sequencer and (not best.sequencer or newer(item.sequencer, best.sequencer)):
                    by_key[slot] = (item, members)
                else:
                    report.add(stale=1)  # coalesced: the key is synced once, with its newest event
            else:
                by_key[slot] = (item, [record])

    def run(unit: tuple[str, Any]) -> BaseException | None:
        kind, item = unit
        try:
            if kind == "key":
                replicator.sync_key(item, report)
            else:
                replicator.run_parts(item, report)
            return None
        except Exception as exc:  # noqa: BLE001 - every failure is classified below
            return exc

    units: list[tuple[str, Any]] = [("key", ev) for ev, _ in by_key.values()] + [("parts", t) for t, _ in tasks]
    owners: list[list[Json]] = [members for _, members in by_key.values()] + [[r] for _, r in tasks]
    with ThreadPoolExecutor(max_workers=max(1, min(settings.copy.concurrency, len(units) or 1))) as pool:
        outcomes = list(pool.map(run, units))
    for outcome, members in zip(outcomes, owners, strict=True):
        if outcome is None:
            continue
        verdict = classify_s3(outcome)
        if isinstance(verdict, RetryableError):
            if verdict.reason in CREDENTIAL_CODES:
                replicator_refresh()
            logger.warning("event will be retried", extra={"reason": verdict.reason, "error": str(verdict)[:300]})
            failed.update(id(r) for r in members)
        else:
            for record in members:
                report.add(parked=int(park_or_fail(parking, record, verdict, failed, parked)))
    report.failed = len(failed)
    return failed, report


def _emit(report: BatchReport) -> None:
    counts = {
        "ObjectsCopied": report.copied,
        "BytesCopied": report.bytes_copied,
        "ObjectsSkippedIdentical": report.skipped_identical,
        "ObjectsDeleted": report.deleted,
        "StaleEventsDropped": report.stale,
        "SplitCopiesStarted": report.split,
        "EventsParked": report.parked,
        "MessagesRetried": report.failed,
    }
    publish(counts, lags_ms=report.lags_ms)  # the one ReplicationLag, by its service dimension
    for listener in report_listeners:
        listener(report)


# ---- the Lambda ------------------------------------------------------------------------------------------------
@dataclass
class Runtime(CopierRuntime):
    """What a warm bucket_replicator keeps between invocations: the bucket function's, and its queues and table."""

    parking: ParkingLot
    sequencers: SequencerStore | None
    sqs: Any

    def replicator(self) -> Replicator:
        """A replicator on the current target session (rebuilt after a refresh or a key rotation)."""
        return Replicator(self.settings, self.copier(), self.sequencers, self.sqs)


@cache
def runtime() -> Runtime:
    """Settings and clients, built once per cold start; a bad setting fails here with its name."""
    settings = load_bucket_settings().require_replicator()
    config = client_config(max_attempts=8, pool=settings.copy.concurrency * 2 + 4)
    region = settings.source_region
    assert settings.parking_queue_url
    return Runtime(
        settings=settings,
        access=TargetAccess.of(settings.target, settings.peer),
        source_s3=boto3.client("s3", region_name=region, config=config),
        parking=ParkingLot(settings.parking_queue_url, source="bucket_replicator", region=region),
        sequencers=(
            SequencerStore(
                boto3.client("dynamodb", region_name=region, config=config),
                settings.sequencer_table,
                settings.sequencer_ttl_days * 86400,
            )
            if settings.sequencer_table
            else None
        ),
        sqs=boto3.client("sqs", region_name=region, config=config),
    )


def replicator_refresh() -> None:
    """Drop the target session after a credential error: the retry authenticates afresh."""
    runtime().access.refresh()


def handle(event: Json, context: Any) -> Json:
    """The whole Lambda invocation: sync each key, settle each message through BatchProcessor, report."""
    rt = runtime()
    records = event.get("Records") or []
    if not records:
        return {"batchItemFailures": []}
    failed, report = replicate_batch(records, replicator=rt.replicator(), parking=rt.parking)
    response = settle(event, failed, EventType.SQS, context)
    _emit(report)
    logger.info("batch done", extra={k: v for k, v in vars(report).items() if not k.startswith(("lags", "_"))})
    return dict(response)
