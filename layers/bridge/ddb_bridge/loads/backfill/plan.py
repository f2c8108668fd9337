"""The backfill's execution input, the tables' capacity, and the plan (segments, rates, resume)."""

from __future__ import annotations

from typing import Any

from ...core.capacity import default_segments, describe_table, key_schema, table_capacity
from ...core.inputs import IntField, InvalidInput, flag, input_object, refused, run_id, whole_numbers
from ..settings import BackfillSettings
from .clients import BackfillClients, Json
from .progress import ProgressStore

WRITE_MODES = ("live", "overwrite")


# ---- input -------------------------------------------------------------------------------------------------
_INTS = {
    "totalSegments": IntField(1, 1000, None, "parallel-scan segments (default: one per 2 GB, 1 to 64)"),
    "maxConcurrency": IntField(1, 1000, None, "segments copied at the same time (default: all)"),
    "throughputPercent": IntField(1, 100, 25, "share of the tables' throughput the backfill may use"),
    "maxReadUnitsPerSecond": IntField(1, 10_000_000, None, "cap on read units per second, all segments together"),
    "maxWriteUnitsPerSecond": IntField(1, 10_000_000, None, "cap on write units per second, all segments together"),
    "pageSize": IntField(1, 10_000, 1000, "items per Scan page"),
    "callSeconds": IntField(1, 840, 240, "seconds one Lambda call may copy before it hands over"),
}
_OTHER = ("backfillId", "writeMode", "consistentRead", "comment")


def parse_input(raw: Any, execution: str) -> Json:
    """The execution input with defaults filled in; InvalidInput names the first bad field."""
    raw = input_object(raw, [*_INTS, *_OTHER])
    out: Json = dict(whole_numbers(raw, _INTS))
    out["backfillId"] = run_id(raw, "backfillId", execution)
    mode = raw.get("writeMode")
    if mode is not None and mode not in WRITE_MODES:
        raise InvalidInput(
            f"writeMode must be 'live' (conditional, safe while live replication runs) or "
            f"'overwrite' (BatchWriteItem, only while nothing else writes the target), got {mode!r}"
        )
    out["writeMode"] = mode
    out["consistentRead"] = flag(raw, "consistentRead", True)
    return out


# ---- capacity ----------------------------------------------------------------------------------------------
def segment_rates(values: Json, source: Json, target: Json, concurrency: int) -> tuple[float, float]:
    """Read and write units per second for one segment: the share of capacity, capped, split evenly."""
    share = values["throughputPercent"] / 100
    read = share * source["read"]
    write = share * target["write"]
    if values["maxReadUnitsPerSecond"]:
        read = min(read, values["maxReadUnitsPerSecond"])
    if values["maxWriteUnitsPerSecond"]:
        write = min(write, values["maxWriteUnitsPerSecond"])
    return round(read / concurrency, 3), round(write / concurrency, 3)


# ---- plan --------------------------------------------------------------------------------------------------
def plan(event: Json, settings: BackfillSettings, clients: BackfillClients) -> Json:
    """Validate the input and the tables, fix the rates and the segments (resuming a backfill of the same id)."""
    try:
        values = parse_input(event.get("input"), str(event.get("execution") or "backfill"))
        return _plan(values, settings, clients)
    except InvalidInput as exc:
        return refused(exc, "BackfillInvalidInput")


def _plan(values: Json, settings: BackfillSettings, clients: BackfillClients) -> Json:
    source = describe_table(clients.source, settings.source_table)
    if source is None:
        raise InvalidInput(f"the source table {settings.source_table} does not exist in {settings.source_region}")
    target_ddb = clients.target.client("dynamodb")
    target = describe_table(target_ddb, settings.target.table)
    if target is None:
        raise InvalidInput(
            f"the target table {settings.target.table} does not exist in {settings.target.region}: "
            "the backfill copies into an existing table (create it, or use the full-load workflow, "
            "which creates it by import)"
        )
    if key_schema(source) != key_schema(target):
        raise InvalidInput(f"the target's keys {key_schema(target)} differ from the source's {key_schema(source)}")
    store = ProgressStore(clients.source, settings.progress_table)
    earlier = store.existing(values["backfillId"])  # a resumed backfill keeps its segments and write mode
    total = values["totalSegments"] or (earlier or {}).get("totalSegments") or default_segments(source)
    mode = values["writeMode"] or (earlier or {}).get("writeMode") or "live"
    concurrency = min(values["maxConcurrency"] or total, total)
    values = {**values, "totalSegments": total, "maxConcurrency": concurrency, "writeMode": mode}
    if mode == "live":
        if not settings.tombstone_table:
            raise InvalidInput(
                "writeMode 'live' needs the tombstone table that live replication writes on deletes "
                "(TOMBSTONE_TABLE_NAME / TombstoneTableName); without it a backfilled item could "
                "resurrect a live delete. Set it on both functions, or use 'overwrite' while live "
                "replication is stopped"
            )
        if describe_table(target_ddb, settings.tombstone_table) is None:
            raise InvalidInput(
                f"the tombstone table {settings.tombstone_table} does not exist in {settings.target.region}"
            )
    header = store.header(values["backfillId"], values, clients.now())
    if header["totalSegments"] != total or header["writeMode"] != values["writeMode"]:
        raise InvalidInput(
            f"backfill {values['backfillId']} was started with {header['totalSegments']} segments "
            f"and writeMode {header['writeMode']!r}: resume it with the same values, or choose a "
            "new backfillId"
        )
    resumed = [] if header["new"] else store.segments(values["backfillId"], total)
    src_cap, tgt_cap = table_capacity(source), table_capacity(target)
    read, write = segment_rates(values, src_cap, tgt_cap, concurrency)
    shared = {
        "action": "copy",
        "backfillId": values["backfillId"],
        "totalSegments": total,
        "writeMode": values["writeMode"],
        "readUnitsPerSecond": read,
        "writeUnitsPerSecond": write,
        "pageSize": values["pageSize"],
        "callSeconds": values["callSeconds"],
        "consistentRead": values["consistentRead"],
    }
    return {
        "valid": True,
        **shared,
        "maxConcurrency": concurrency,
        "replicationMode": settings.replication_mode,
        "segments": [{"segment": s} for s in range(total)],
        "resumed": {
            "segmentsDone": sum(1 for c in resumed if c["done"]),
            "itemsCopied": sum(c["copied"] for c in resumed),
        }
        if resumed
        else None,
        "capacity": {"source": src_cap, "target": tgt_cap, "throughputPercent": values["throughputPercent"]},
        "startedAt": clients.now(),
    }
