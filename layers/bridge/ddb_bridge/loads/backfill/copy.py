"""One call on one segment: scan, write, checkpoint, page after page, within the time budget."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ...core.capacity import RateLimiter, read_units, write_units
from ...core.codec import Image, decode_image, encode_image, item_size
from ...core.errors import PermanentError
from ...core.keys import key_id, shown
from ...core.observability import MetricUnit, logger, metrics
from ...table.tombstones import Tombstones
from ..settings import BackfillSettings
from .clients import BackfillClients, Json
from .progress import ProgressStore
from .writers import LiveWriter, OverwriteWriter, Written

_LEASE_MARGIN_S = 120


# ---- one call on one segment -------------------------------------------------------------------------------
@dataclass
class _Progress:
    copied: int = 0
    skipped: int = 0
    scanned: int = 0
    pages: int = 0
    done: bool = False
    last_key: Json | None = None
    parked: int = 0
    seconds_throttled: float = 0.0
    retries: int = 0
    requests: int = field(default=0)

    def as_json(self) -> Json:
        return {
            "copied": self.copied,
            "skipped": self.skipped,
            "parked": self.parked,
            "scanned": self.scanned,
            "pages": self.pages,
            "done": self.done,
            "lastEvaluatedKey": self.last_key,
        }


def copy_segment(
    state: Json, settings: BackfillSettings, clients: BackfillClients, *, owner: str, budget_seconds: float
) -> Json:
    """Copy pages of one segment until it ends or the budget is spent; returns the segment's new state."""
    backfill_id, segment = str(state["backfillId"]), int(state["segment"])
    started = clients.now()
    store = ProgressStore(clients.source, settings.progress_table)
    checkpoint = store.claim(backfill_id, segment, owner, started, budget_seconds + _LEASE_MARGIN_S)
    progress = _Progress(
        checkpoint["copied"],
        checkpoint["skipped"],
        checkpoint["scanned"],
        checkpoint["pages"],
        checkpoint["done"],
        checkpoint["lastEvaluatedKey"],
        checkpoint["parked"],
    )
    calls = int(state.get("calls", 0)) + 1
    if not progress.done:
        try:
            _copy_pages(state, settings, clients, store, owner, progress, started, budget_seconds)
        finally:
            store.release(backfill_id, segment, owner)
    else:
        store.release(backfill_id, segment, owner)
    metrics.add_dimension(name="Workflow", value="Backfill")
    metrics.add_metric(name="BackfillItemsCopied", unit=MetricUnit.Count, value=progress.copied - checkpoint["copied"])
    metrics.add_metric(
        name="BackfillItemsSkipped", unit=MetricUnit.Count, value=progress.skipped - checkpoint["skipped"]
    )
    metrics.add_metric(name="BackfillItemsParked", unit=MetricUnit.Count, value=progress.parked - checkpoint["parked"])
    metrics.add_metric(name="BackfillThrottledSeconds", unit=MetricUnit.Seconds, value=progress.seconds_throttled)
    metrics.add_metadata(key="segment", value=f"{backfill_id}/{segment}")
    logger.info(
        "segment progress",
        extra={
            "backfillId": backfill_id,
            "segment": segment,
            **progress.as_json(),
            "lastEvaluatedKey": None,
            "calls": calls,
        },
    )
    out = {**state, **progress.as_json(), "calls": calls}
    out["secondsThisCall"] = round(clients.now() - started, 3)
    out["writeRequests"] = int(state.get("writeRequests", 0)) + progress.requests
    return out


def _copy_pages(
    state: Json,
    settings: BackfillSettings,
    clients: BackfillClients,
    store: ProgressStore,
    owner: str,
    progress: _Progress,
    started: float,
    budget_seconds: float,
) -> None:
    desc = clients.source.describe_table(TableName=settings.source_table)["Table"]
    key_names = tuple(k["AttributeName"] for k in desc["KeySchema"])
    target = clients.target.client("dynamodb", pool=settings.write_concurrency + 2)
    live = state["writeMode"] == "live"
    with ThreadPoolExecutor(max_workers=settings.write_concurrency) as pool:
        writer: OverwriteWriter | LiveWriter
        if live:
            assert settings.tombstone_table, "plan refuses live mode without a tombstone table"
            tombstones = Tombstones(settings.tombstone_table, 0)
            writer = LiveWriter(
                target,
                settings.target.table,
                key_names,
                tombstones,
                pool=pool,
                replication_mode=settings.replication_mode,
                attrs=settings.versions,
                sleep=clients.sleep,
            )
        else:
            writer = OverwriteWriter(target, settings.target.table, settings.versions, pool=pool, sleep=clients.sleep)
        _copy_loop(state, settings, clients, store, owner, progress, started, budget_seconds, writer, key_names)


def _copy_loop(
    state: Json,
    settings: BackfillSettings,
    clients: BackfillClients,
    store: ProgressStore,
    owner: str,
    progress: _Progress,
    started: float,
    budget_seconds: float,
    writer: OverwriteWriter | LiveWriter,
    key_names: tuple[str, ...] = (),
) -> None:
    """Scan -> write -> checkpoint, page after page, reading the next page while this one is written.

    The read-ahead hides the Scan's latency behind the writes. It never moves the checkpoint: that
    advances only after a page is written, so a page read ahead and not written (the call's time is up,
    or it failed) is read again by the next call. The rate limit counts a page when it arrives, so the
    read-ahead adds at most one page to the limiter's one second of burst.
    """
    live = isinstance(writer, LiveWriter)
    reads = RateLimiter(float(state.get("readUnitsPerSecond") or 0), clients.now, clients.sleep)
    writes = RateLimiter(float(state.get("writeUnitsPerSecond") or 0), clients.now, clients.sleep)
    scan: Json = {
        "TableName": settings.source_table,
        "Segment": int(state["segment"]),
        "TotalSegments": int(state["totalSegments"]),
        "Limit": int(state.get("pageSize") or 1000),
        "ConsistentRead": bool(state.get("consistentRead", True)),
    }

    def read(start: Json | None) -> Json:
        return dict(clients.source.scan(**scan, **({"ExclusiveStartKey": start} if start else {})))

    slowest_page = 0.0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as reader:
        next_page = reader.submit(read, decode_image(progress.last_key) if progress.last_key else None)
        while not progress.done:
            page_started = clients.now()
            page = next_page.result()
            lek = page.get("LastEvaluatedKey")
            if lek:
                next_page = reader.submit(read, lek)
            items = page.get("Items", [])
            sizes = [item_size(i) for i in items]
            reads.spend(read_units(sizes, scan["ConsistentRead"]))
            written = writer.write(items) if items else Written()
            writes.spend(write_units(sizes, transactional=live))
            progress.parked += _park_refused(written.refused, state, settings, clients, key_names)
            progress.copied += written.copied
            progress.skipped += written.skipped
            progress.retries += written.retries
            progress.requests += written.requests
            progress.scanned += len(items)
            progress.pages += 1
            progress.last_key = encode_image(lek) if lek else None
            progress.done = lek is None
            progress.seconds_throttled = reads.waited + writes.waited
            store.save(str(state["backfillId"]), int(state["segment"]), owner, progress.as_json())
            now = clients.now()
            slowest_page = max(slowest_page, now - page_started)
            if now - started + slowest_page * 1.5 > budget_seconds:
                return


def _park_refused(
    refused: list[tuple[Image, PermanentError]],
    state: Json,
    settings: BackfillSettings,
    clients: BackfillClients,
    key_names: tuple[str, ...],
) -> int:
    """Park each item the target refused, whole, in the stack's parking queue; how many were parked.

    The parked record is stream-shaped (a MODIFY with the item's key and image), so the resync command
    (`ddb_bridge.ops.resync`) re-reads the key from the source and sends it through the replicator once
    the cause is fixed. Without a parking queue, or when SQS cannot take it, the page fails (retried,
    never skipped): the checkpoint does not move past an item that was neither written nor parked.
    """
    if not refused:
        return 0
    for item, error in refused:
        names = key_names or tuple(item)[:1]
        wire_key = encode_image({name: item[name] for name in names if name in item})
        where = shown(key_id(wire_key), settings.log_keys) if wire_key else "(no key)"
        message = f"backfill {state['backfillId']} segment {state['segment']}: the target refused key {where}: {error}"
        if clients.parking is None:
            raise PermanentError(
                error.reason, message + " (set PARKING_QUEUE_URL so that refused items are parked and the copy goes on)"
            )
        record = {
            "eventName": "MODIFY",
            "eventSource": "ddb-bridge:backfill",
            "backfillId": state["backfillId"],
            "segment": state["segment"],
            "dynamodb": {"Keys": wire_key, "NewImage": encode_image(item), "SequenceNumber": "0"},
        }
        clients.parking.park(record, reason=error.reason, error=message)
        logger.warning("item parked", extra={"reason": error.reason, "key": where})
    return len(refused)
