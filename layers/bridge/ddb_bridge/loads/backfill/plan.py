"""The backfill's execution input, the tables' capacity, and the plan (segments, rates, resume)."""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ...core.errors import error_code
from ...core.observability import MetricUnit, metrics
from ..settings import BackfillSettings
from .clients import BackfillClients, Json
from .progress import ProgressStore

WRITE_MODES = ("live", "overwrite")
ON_DEMAND_WARM_DEFAULT = {"read": 12000, "write": 4000}  # a new on-demand table's initial throughput
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


class InvalidInput(ValueError):
    """The execution input is wrong; the message says which field and what it expects."""


# ---- input -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Int:
    minimum: int
    maximum: int
    default: int | None
    meaning: str


_INTS = {
    "totalSegments": _Int(1, 1000, None, "parallel-scan segments (default: one per 2 GB, 1 to 64)"),
    "maxConcurrency": _Int(1, 1000, None, "segments copied at the same time (default: all)"),
    "throughputPercent": _Int(1, 100, 25, "share of the tables' throughput the backfill may use"),
    "maxReadUnitsPerSecond": _Int(1, 10_000_000, None, "cap on read units per second, all segments together"),
    "maxWriteUnitsPerSecond": _Int(1, 10_000_000, None, "cap on write units per second, all segments together"),
    "pageSize": _Int(1, 10_000, 1000, "items per Scan page"),
    "callSeconds": _Int(1, 840, 240, "seconds one Lambda call may copy before it hands over"),
}
_OTHER = ("backfillId", "writeMode", "consistentRead", "comment")


def _number(name: str, value: Any, spec: _Int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().lstrip("-").isdigit():
        raise InvalidInput(
            f"{name} must be a whole number from {spec.minimum} to {spec.maximum} ({spec.meaning}), got {value!r}"
        )
    number = int(value)
    if not spec.minimum <= number <= spec.maximum:
        raise InvalidInput(f"{name} must be from {spec.minimum} to {spec.maximum} ({spec.meaning}), got {number}")
    return number


def parse_input(raw: Any, execution: str) -> Json:
    """The execution input with defaults filled in; InvalidInput names the first bad field."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise InvalidInput(f"the execution input must be a JSON object, got {type(raw).__name__}")
    for name in raw:
        if name not in _INTS and name not in _OTHER:
            close = difflib.get_close_matches(name, [*_INTS, *_OTHER], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise InvalidInput(f"unknown field {name!r}{hint}; allowed: {', '.join([*_INTS, *_OTHER])}")
    out: Json = {
        name: _number(name, raw[name], spec) if raw.get(name) is not None else spec.default
        for name, spec in _INTS.items()
    }
    backfill_id = str(raw.get("backfillId") or execution)
    if not _ID_RE.match(backfill_id):
        raise InvalidInput(
            f"backfillId must be 1-80 of A-Z a-z 0-9 _ . - (it names the checkpoints), got {backfill_id!r}"
        )
    out["backfillId"] = backfill_id
    mode = raw.get("writeMode")
    if mode is not None and mode not in WRITE_MODES:
        raise InvalidInput(
            f"writeMode must be 'live' (conditional, safe while live replication runs) or "
            f"'overwrite' (BatchWriteItem, only while nothing else writes the target), got {mode!r}"
        )
    out["writeMode"] = mode
    consistent = raw.get("consistentRead", True)
    if not isinstance(consistent, bool):
        raise InvalidInput(f"consistentRead must be true or false, got {consistent!r}")
    out["consistentRead"] = consistent
    return out


# ---- capacity ----------------------------------------------------------------------------------------------
def table_capacity(desc: Json) -> Json:
    """Read and write units per second the table can take, and where the figure comes from."""
    billing = (desc.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    if billing == "PROVISIONED":
        pt = desc.get("ProvisionedThroughput") or {}
        return {
            "read": int(pt.get("ReadCapacityUnits") or 1),
            "write": int(pt.get("WriteCapacityUnits") or 1),
            "basis": "provisioned capacity",
        }
    warm = desc.get("WarmThroughput") or {}
    read = int(warm.get("ReadUnitsPerSecond") or ON_DEMAND_WARM_DEFAULT["read"])
    write = int(warm.get("WriteUnitsPerSecond") or ON_DEMAND_WARM_DEFAULT["write"])
    basis = "on-demand warm throughput" if warm else "on-demand initial throughput"
    limits = desc.get("OnDemandThroughput") or {}
    if int(limits.get("MaxReadRequestUnits") or -1) > 0:
        read = min(read, int(limits["MaxReadRequestUnits"]))
    if int(limits.get("MaxWriteRequestUnits") or -1) > 0:
        write = min(write, int(limits["MaxWriteRequestUnits"]))
    return {"read": read, "write": write, "basis": basis}


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


def default_segments(desc: Json) -> int:
    """About one segment per 2 GB of table, from 1 to 64."""
    size = int(desc.get("TableSizeBytes") or 0)
    return max(1, min(64, math.ceil(size / (2 * 1024**3))))


# ---- plan --------------------------------------------------------------------------------------------------
def plan(event: Json, settings: BackfillSettings, clients: BackfillClients) -> Json:
    """Validate the input and the tables, fix the rates and the segments (resuming a backfill of the same id)."""
    try:
        values = parse_input(event.get("input"), str(event.get("execution") or "backfill"))
        return _plan(values, settings, clients)
    except InvalidInput as exc:
        metrics.add_metric(name="BackfillInvalidInput", unit=MetricUnit.Count, value=1)
        return {"valid": False, "message": f"Invalid input: {exc}. Fix it and start a new execution."}


def _describe(client: Any, table: str) -> Json | None:
    try:
        return dict(client.describe_table(TableName=table)["Table"])
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise


def _keys(desc: Json) -> list[str]:
    """A table's keys as `name (HASH, S)`, in order."""
    types = {a["AttributeName"]: a["AttributeType"] for a in desc["AttributeDefinitions"]}
    return [f"{k['AttributeName']} ({k['KeyType']}, {types.get(k['AttributeName'])})" for k in desc["KeySchema"]]


def _plan(values: Json, settings: BackfillSettings, clients: BackfillClients) -> Json:
    source = _describe(clients.source, settings.source_table)
    if source is None:
        raise InvalidInput(f"the source table {settings.source_table} does not exist in {settings.source_region}")
    target_ddb = clients.target.client("dynamodb")
    target = _describe(target_ddb, settings.target.table)
    if target is None:
        raise InvalidInput(
            f"the target table {settings.target.table} does not exist in {settings.target.region}: "
            "the backfill copies into an existing table (create it, or use the full-load workflow, "
            "which creates it by import)"
        )
    if _keys(source) != _keys(target):
        raise InvalidInput(f"the target's keys {_keys(target)} differ from the source's {_keys(source)}")
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
        if _describe(target_ddb, settings.tombstone_table) is None:
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
