"""relay_applier's domain: packs from the peer's relay (this region's Kinesis stream) -> the local table.

Delivery is hostile (PutRecords retries reorder, Lambda redelivers after partial failures), so the
applier decides by version only: each key's newest change in the batch is written with
last-writer-wins conditions inside DynamoDB, ties broken by origin; deletes leave tombstones (no
resurrection) and echo markers (no echo); the same version twice is a counted no-op. Any key schema:
keys come from the changes. A record that cannot be decoded is parked whole, with the reason, and
the batch goes on; a replay command puts it back through the function (`ddb_bridge.ops.replay`).
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
from ..core.versions import rank
from ..table.writer import Outcome
from .local import LocalTable
from .packs import MalformedPack, Pack, decode
from .settings import ApplierSettings, load_applier_settings
from .writer import MarkedWriter


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
    failed: int = 0
    write_requests: int = 0
    lags_ms: list[int] = field(default_factory=list)


report_listeners: list[Callable[[ApplierReport], None]] = []


def read_pack(record: dict[str, Any], region_tag: str) -> Pack:
    """The pack inside one Lambda Kinesis record; PermanentError when it is poison."""
    try:
        data = base64.b64decode(record["kinesis"]["data"], validate=True)
        pack = decode(data)
    except (KeyError, TypeError, binascii.Error, MalformedPack) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
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
            item = decode_image(wire.image) if wire.image is not None else None
        except MalformedImage as exc:
            raise PermanentError("MalformedRecord", f"bad change in pack: {exc}") from exc
        op = Op.PUT if wire.op == "P" else Op.DELETE
        out.append(Change(wire.key_id, key, op, item, wire.version, seq, wire.approx_ms, False, record))
    return out


def apply_batch(
    records: list[dict[str, Any]], *, settings: ApplierSettings, writer: MarkedWriter, parking: ParkingLot
) -> tuple[set[int], ApplierReport]:
    """Apply a batch; returns the ids of the records to report as failed, and the batch report."""
    report = ApplierReport(records=len(records))
    best: dict[str, Change] = {}
    holders: dict[str, list[dict[str, Any]]] = {}
    failed_records: set[int] = set()
    parked: set[int] = set()

    for record in records:
        try:
            changes = changes_of(read_pack(record, settings.region_tag), record)
        except PermanentError as error:
            report.parked += park_or_fail(parking, record, error, failed_records, parked)
            continue
        for change in changes:
            report.changes += 1
            holders.setdefault(change.key_id, []).append(record)
            current = best.get(change.key_id)
            order = (rank(change.version), change.op is Op.DELETE)
            if current is None:
                best[change.key_id] = change
                continue
            current_order = (rank(current.version), current.op is Op.DELETE)
            if order == current_order:
                report.duplicate += 1  # delivered twice (Kinesis or a relay retry): nothing more to write
            else:
                report.coalesced += 1
                if order > current_order:
                    best[change.key_id] = change

    requests_before = writer.requests
    results = writer.apply(best.values())
    report.write_requests = writer.requests - requests_before
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
    failed, report = apply_batch(records, settings=rt.settings, writer=rt.local.writer(), parking=rt.parking)
    response = settle(event, failed, EventType.KinesisDataStreams, context)
    _emit(report)
    logger.info("batch applied", extra={k: v for k, v in vars(report).items() if k != "lags_ms"})
    return dict(response)
