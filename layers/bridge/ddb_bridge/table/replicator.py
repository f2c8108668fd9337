"""table_replicator's domain: one DynamoDB stream batch -> the target table, with partial failures.

The batch is parsed, TTL deletes filtered by setting, coalesced to the last change per key, and
written concurrently. Each record then settles through Powertools' BatchProcessor: a record whose
key failed retryably is reported (Lambda resumes from the lowest failed sequence number, replaying
in order), a permanent failure is parked whole and counts as handled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import EventType

from ..core.batch import park_or_fail, park_or_retry, publish, settle
from ..core.changes import Change, coalesce, from_stream_record
from ..core.clients import client_config, target_sessions
from ..core.errors import CREDENTIAL_CODES, PermanentError
from ..core.observability import logger
from ..core.parking import ParkingLot
from .settings import ReplicatorSettings, load_replicator_settings
from .tombstones import Tombstones
from .writer import Outcome, TableWriter


@dataclass
class BatchReport:
    """What one batch did; logged, sent as metrics, and handed to listeners (the local harness)."""

    records: int = 0
    applied: int = 0
    stale: int = 0
    coalesced: int = 0
    skipped_ttl: int = 0
    parked: int = 0
    failed: int = 0
    non_retryable: int = 0
    write_requests: int = 0
    lags_ms: list[int] = field(default_factory=list)


report_listeners: list[Callable[[BatchReport], None]] = []


def replicate_batch(
    records: list[dict[str, Any]], *, settings: ReplicatorSettings, writer: TableWriter, parking: ParkingLot
) -> tuple[set[int], BatchReport]:
    """Apply a batch; returns the ids of the records to report as failed, and the batch report."""
    report = BatchReport(records=len(records))
    failed_keys: set[str] = set()
    failed_records: set[int] = set()
    changes: list[Change] = []
    for record in records:
        try:
            change = from_stream_record(record, settings.versions)
        except PermanentError as error:
            report.parked += park_or_fail(parking, record, error, failed_records)
            continue
        if change.is_ttl and not settings.replicate_ttl_deletes:
            report.skipped_ttl += 1
            continue
        changes.append(change)

    latest, report.coalesced = coalesce(changes, by_version=settings.mode == "lww")
    requests_before = writer.requests
    results = writer.apply(latest.values())
    report.write_requests = writer.requests - requests_before
    now_ms = int(time.time() * 1000)
    for key, result in results.items():
        change = latest[key]
        if result is Outcome.APPLIED:
            report.applied += 1
            report.lags_ms.append(max(0, now_ms - change.approx_ms))
        elif result is Outcome.STALE or result is Outcome.DUPLICATE:  # DUPLICATE: only with echo_markers
            report.stale += 1
        elif isinstance(result, PermanentError):
            if park_or_retry(parking, change.record, result):
                report.parked += 1
            else:
                failed_keys.add(key)
        else:
            if result.reason in CREDENTIAL_CODES:
                target_sessions.invalidate()  # the retry assumes the role afresh
            failed_keys.add(key)
            report.non_retryable += result.needs_operator
            logger.warning("write failed, will retry", extra={"reason": result.reason, "error": str(result)[:300]})

    for change in changes:
        if change.key_id in failed_keys:
            failed_records.add(id(change.record))
    report.failed = len(failed_records)
    return failed_records, report


def _emit(report: BatchReport) -> None:
    counts = {
        "ChangesApplied": report.applied,
        "ChangesStale": report.stale,
        "ChangesCoalesced": report.coalesced,
        "RecordsParked": report.parked,
        "RecordsRetried": report.failed,
        "NonRetryableFailures": report.non_retryable,
        "TtlDeletesSkipped": report.skipped_ttl,
        "WriteRequests": report.write_requests,
    }
    publish(counts, lags_ms=report.lags_ms)
    for listener in report_listeners:
        listener(report)


@dataclass
class Runtime:
    """What a warm replicator keeps between invocations."""

    settings: ReplicatorSettings
    parking: ParkingLot
    tombstones: Tombstones | None

    def writer(self) -> TableWriter:
        """A writer on the current (cached, refreshable) target session."""
        target = self.settings.target
        config = client_config(
            max_attempts=target.max_attempts, https_proxy=target.https_proxy, pool=self.settings.write_concurrency + 2
        )
        clients = target_sessions.get(
            region=target.region, role_arn=target.role_arn, external_id=target.external_id, config=config
        )
        return TableWriter(
            clients.dynamodb,
            target.table,
            mode=self.settings.mode,
            attrs=self.settings.versions,
            tombstones=self.tombstones,
            concurrency=self.settings.write_concurrency,
        )


@cache
def runtime() -> Runtime:
    """Settings and clients, built once per cold start; a bad setting fails here with its name."""
    settings = load_replicator_settings()
    tombstones = (
        Tombstones(settings.tombstone_table, settings.tombstone_days * 86400) if settings.tombstone_table else None
    )
    return Runtime(
        settings,
        ParkingLot(settings.parking_queue_url, source="table_replicator", region=settings.aws_region),
        tombstones,
    )


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The whole Lambda invocation: apply, settle each record through BatchProcessor, report."""
    rt = runtime()
    writer = rt.writer()
    records = event.get("Records") or []
    if not records:
        return {"batchItemFailures": []}
    failed, report = replicate_batch(records, settings=rt.settings, writer=writer, parking=rt.parking)
    response = settle(event, failed, EventType.DynamoDBStreams, context)
    _emit(report)
    logger.info("batch done", extra={k: v for k, v in vars(report).items() if k != "lags_ms"})
    return dict(response)
