"""relay_applier's domain: packs from the peer's relay (this region's Kinesis stream) -> the local table.

Delivery is hostile (PutRecords retries reorder, Lambda redelivers after partial failures), so the
applier decides by version only: each key's newest change in the batch is judged against what the
region holds (`apply.Applier`: read, decide, write; no transaction), a stale change costs no write, the
same version twice is a counted no-op, deletes leave their `P#` record first (no resurrection, no
echo). Any key schema: keys come from the changes. A record that cannot be decoded (or inflates past
RELAY_MAX_PACK_BYTES, or holds anything DynamoDB would refuse) is parked whole, with the reason, and
the batch goes on; so is a record holding a change stamped further in the future than
MAX_CLOCK_SKEW_SECONDS, which would otherwise win last-writer-wins forever (its other changes still
apply). A replay command puts a parked record back through the function (`ddb_bridge.ops.replay`).
Counters go out as CloudWatch metrics (no hot counter item).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import EventType

from ..core.batch import park_or_fail, publish, settle
from ..core.changes import Change, Op
from ..core.codec import MalformedImage, decode_image
from ..core.errors import PermanentError
from ..core.observability import logger
from ..core.parking import ParkingLot
from ..table.writer import Outcome
from .apply import Applier
from .local import LocalTable, Store
from .packs import DEFAULT_MAX_PACK_BYTES, MAX_RECORD_BYTES, MalformedPack, Pack, decode
from .settings import ApplierSettings, load_applier_settings

_MAX_DATA_TEXT = (MAX_RECORD_BYTES // 3 + 1) * 4  # a Kinesis record's data as Lambda's base64 text


@dataclass
class ApplierReport:
    """What one batch did; logged, sent as metrics, and handed to listeners (harness, demo, bench)."""

    records: int = 0
    changes: int = 0
    applied: int = 0
    stale: int = 0
    duplicate: int = 0
    coalesced: int = 0
    parked: int = 0
    future: int = 0
    failed: int = 0
    non_retryable: int = 0
    write_requests: int = 0
    lags_ms: list[int] = field(default_factory=list)


report_listeners: list[Callable[[ApplierReport], None]] = []


def read_pack(record: dict[str, Any], region_tag: str, *, max_pack_bytes: int = DEFAULT_MAX_PACK_BYTES) -> Pack:
    """The pack inside one Lambda Kinesis record; PermanentError when it is poison."""
    try:
        text = record["kinesis"]["data"]
        if not isinstance(text, str) or len(text) > _MAX_DATA_TEXT:
            raise MalformedPack("kinesis.data must be base64 text of at most one Kinesis record")
        data = base64.b64decode(text, validate=True)
        pack = decode(data, max_bytes=max_pack_bytes)
    except (KeyError, TypeError, binascii.Error, MalformedPack) as exc:
        detail = (
            f"missing field {exc}"
            if isinstance(exc, KeyError)
            else str(exc)
            if isinstance(exc, MalformedPack)
            else type(exc).__name__
        )
        raise PermanentError("MalformedRecord", f"not a relay pack: {detail}") from exc
    own = pack.origin == region_tag or any(c.version and c.version.origin == region_tag for c in pack.changes)
    if own:  # a relay pointed at its own region's stream would loop forever
        raise PermanentError("OwnOrigin", f"pack from {pack.origin!r} carries changes of this region {region_tag!r}")
    return pack


def changes_of(pack: Pack, record: dict[str, Any]) -> list[Change]:
    """The pack's changes as the writer takes them (client form: binary as bytes)."""
    seq = str(record.get("kinesis", {}).get("sequenceNumber", ""))
    out: list[Change] = []
    for wire in pack.changes:
        try:
            key = decode_image(wire.keys)
            item = wire.item if wire.item is not None or wire.image is None else decode_image(wire.image)
        except MalformedImage as exc:
            raise PermanentError("MalformedRecord", f"bad change in pack: {exc}") from exc
        op = Op.PUT if wire.op == "P" else Op.DELETE
        out.append(Change(wire.key_id, key, op, item, wire.version, seq, wire.approx_ms, False, record))
    return out


def apply_batch(
    records: list[dict[str, Any]], *, settings: ApplierSettings, store: Store, parking: ParkingLot
) -> tuple[set[int], ApplierReport]:
    """Apply a batch; returns the ids of the records to report as failed, and the batch report."""
    report = ApplierReport(records=len(records))
    best: dict[str, Change] = {}
    holders: dict[str, list[dict[str, Any]]] = {}
    failed_records: set[int] = set()
    parked: set[int] = set()

    horizon_us = int((time.time() + settings.max_clock_skew_seconds) * 1_000_000)
    for record in records:
        try:
            changes = changes_of(read_pack(record, settings.region_tag, max_pack_bytes=settings.max_pack_bytes), record)
        except PermanentError as error:
            report.parked += park_or_fail(parking, record, error, failed_records, parked)
            continue
        for change in changes:
            assert change.version is not None
            if change.version.ts > horizon_us:
                report.future += 1
                future = PermanentError(
                    "FutureVersion",
                    f"a change stamped more than MAX_CLOCK_SKEW_SECONDS={settings.max_clock_skew_seconds} ahead "
                    "of this region's clock: it would win last-writer-wins until then (fix the writer's clock)",
                )
                report.parked += park_or_fail(parking, record, future, failed_records, parked)
                continue
            report.changes += 1
            holders.setdefault(change.key_id, []).append(record)
            current = best.get(change.key_id)
            if current is None:
                best[change.key_id] = change
                continue
            assert current.version is not None
            if change.version == current.version:
                report.duplicate += 1  # delivered twice (Kinesis or a relay retry): nothing more to write
            else:
                report.coalesced += 1
                if change.version > current.version:
                    best[change.key_id] = change

    results = Applier(store, settings.stamps).apply(list(best.values()))
    report.write_requests = store.requests
    now_ms = int(time.time() * 1000)
    failed_keys: set[str] = set()
    for kid, result in results.items():
        change = best[kid]
        if result is Outcome.APPLIED:
            report.applied += 1
            report.lags_ms.append(max(0, now_ms - change.approx_ms))
        elif result is Outcome.STALE:
            report.stale += 1
        elif result is Outcome.DUPLICATE:
            report.duplicate += 1
        elif isinstance(result, PermanentError):
            report.parked += park_or_fail(parking, change.record, result, failed_records, parked)
        else:
            failed_keys.add(kid)
            report.non_retryable += result.needs_operator
            logger.warning("write failed, will retry", extra={"reason": result.reason, "error": str(result)[:300]})
    for kid in failed_keys:
        failed_records.update(id(r) for r in holders[kid])
    report.failed = len(failed_records)
    return failed_records, report


def _emit(report: ApplierReport) -> None:
    counts = {
        "ChangesApplied": report.applied,
        "ChangesStale": report.stale,
        "ChangesDuplicate": report.duplicate,
        "ChangesCoalesced": report.coalesced,
        "RecordsParked": report.parked,
        "RecordsRetried": report.failed,
        "NonRetryableFailures": report.non_retryable,
        "ChangesFromTheFuture": report.future,
        "WriteRequests": report.write_requests,
    }
    publish(counts, lags_ms=report.lags_ms)
    for listener in report_listeners:
        listener(report)


@dataclass
class Runtime:
    """What a warm applier keeps between invocations."""

    settings: ApplierSettings
    parking: ParkingLot
    local: LocalTable


@cache
def runtime() -> Runtime:
    """Settings and clients, built once per cold start; a bad setting fails here with its name."""
    settings = load_applier_settings()
    return Runtime(
        settings,
        ParkingLot(settings.parking_queue_url, source="relay_applier", region=settings.aws_region),
        LocalTable.of(settings),
    )


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The whole Lambda invocation: apply, settle each record through BatchProcessor, report."""
    rt = runtime()
    records = event.get("Records") or []
    if not records:
        return {"batchItemFailures": []}
    failed, report = apply_batch(records, settings=rt.settings, store=rt.local.store(), parking=rt.parking)
    response = settle(event, failed, EventType.KinesisDataStreams, context)
    _emit(report)
    logger.info("batch applied", extra={k: v for k, v in vars(report).items() if k != "lags_ms"})
    return dict(response)
