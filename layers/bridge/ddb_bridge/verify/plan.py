"""Verify's execution input, the tables' check, the rates and the segments (resuming a verify of the same id)."""

from __future__ import annotations

from typing import Any

from ..core.capacity import default_segments, describe_table, key_schema, table_capacity
from ..core.inputs import IntField, InvalidInput, flag, input_object, refused, run_id, whole_numbers
from .clients import Json, VerifyClients
from .progress import VerifyStore
from .settings import VerifySettings

_INTS = {
    "segments": IntField(1, 1000, None, "parallel-scan segments of each table (default: one per 2 GB, 1 to 64)"),
    "pageSize": IntField(1, 10_000, 1000, "items per Scan page (and per checkpoint)"),
    "throughputPercent": IntField(1, 100, 25, "share of each table's read capacity the verify may use"),
    "recheckDelaySeconds": IntField(0, 3600, 15, "seconds a difference must last before it is read again"),
    "sampleSize": IntField(0, 100, 10, "keys of each kind of difference shown in the output"),
    "callSeconds": IntField(1, 840, 240, "seconds one Lambda call may work before it hands over"),
}
_OTHER = ("verifyId", "repair", "ignoreAttributes", "comment")


def parse_input(raw: Any, execution: str) -> Json:
    """The execution input with defaults filled in; InvalidInput names the first bad field."""
    raw = input_object(raw, [*_INTS, *_OTHER])
    out: Json = dict(whole_numbers(raw, _INTS))
    out["verifyId"] = run_id(raw, "verifyId", execution)
    out["repair"] = flag(raw, "repair", False)
    ignore = raw.get("ignoreAttributes") or []
    if not isinstance(ignore, list) or len(ignore) > 100:
        raise InvalidInput(f"ignoreAttributes must be a list of up to 100 attribute names, got {ignore!r}")
    for name in ignore:
        if not isinstance(name, str) or not 1 <= len(name) <= 255:
            raise InvalidInput(f"ignoreAttributes must hold attribute names (1-255 characters), got {name!r}")
    out["ignoreAttributes"] = sorted(set(ignore))
    return out


def rates(percent: int, source: Json, target: Json, workers: int) -> Json:
    """Units per second for one worker: the share of each table's capacity, split evenly."""
    share = percent / 100
    return {
        "sourceReadUnitsPerSecond": round(share * source["read"] / workers, 3),
        "targetReadUnitsPerSecond": round(share * target["read"] / workers, 3),
        "targetWriteUnitsPerSecond": round(share * target["write"] / workers, 3),
    }


def plan(event: Json, settings: VerifySettings, clients: VerifyClients) -> Json:
    """Validate the input and both tables, fix the segments and rates (resuming a verify of the same id)."""
    try:
        values = parse_input(event.get("input"), str(event.get("execution") or "verify"))
        return _plan(values, settings, clients)
    except InvalidInput as exc:
        return refused(exc, "VerifyInvalidInput")


def _plan(values: Json, settings: VerifySettings, clients: VerifyClients) -> Json:
    source = describe_table(clients.source, settings.source_table)
    if source is None:
        raise InvalidInput(f"the source table {settings.source_table} does not exist in {settings.source_region}")
    target = describe_table(clients.target.client("dynamodb"), settings.target.table)
    if target is None:
        raise InvalidInput(f"the target table {settings.target.table} does not exist in {settings.target.region}")
    if key_schema(source) != key_schema(target):
        raise InvalidInput(f"the target's keys {key_schema(target)} differ from the source's {key_schema(source)}")
    keys = {k["AttributeName"] for k in source["KeySchema"]}
    ignore = set(values["ignoreAttributes"]) | settings.ignore_attributes | settings.bridge_attributes
    if ignore & keys:
        raise InvalidInput(f"ignoreAttributes names key attributes {sorted(ignore & keys)}: keys are always compared")
    store = VerifyStore(clients.source, settings.progress_table)
    earlier = store.read_header(values["verifyId"])
    total = (
        values["segments"]
        or (earlier or {}).get("totalSegments")
        or max(default_segments(source), default_segments(target))
    )
    now = clients.now()
    fields = {
        "totalSegments": total,
        "repair": values["repair"],
        "ignore": sorted(ignore),
        "startedAt": int(now * 1000),
    }
    header, new = store.header(values["verifyId"], fields, now)
    if int(header["totalSegments"]) != total or sorted(header["ignore"]) != sorted(ignore):
        raise InvalidInput(
            f"verify {values['verifyId']} was started with {header['totalSegments']} segments and ignoring "
            f"{header['ignore']}: resume it with the same values, or choose a new verifyId"
        )
    if header.get("finishedAt"):
        store.store.update(values["verifyId"], "plan", {"finishedAt": None})  # resumed after its end: runs again
    repair = bool(header["repair"]) or values["repair"]
    if repair and not header["repair"]:
        store.store.update(values["verifyId"], "plan", {"repair": True})
    src_cap, tgt_cap = table_capacity(source), table_capacity(target)
    per_scan = rates(values["throughputPercent"], src_cap, tgt_cap, total)
    per_recheck = rates(values["throughputPercent"], src_cap, tgt_cap, 2 * total)  # both sides at once
    common = {
        "verifyId": values["verifyId"],
        "totalSegments": total,
        "pageSize": values["pageSize"],
        "callSeconds": values["callSeconds"],
        "sampleSize": values["sampleSize"],
        "ignore": sorted(ignore),
        "keys": [k["AttributeName"] for k in source["KeySchema"]],
    }
    return {
        "valid": True,
        **common,
        "repair": repair,
        "recheckDelaySeconds": values["recheckDelaySeconds"],
        "scanRates": per_scan,
        "recheckRates": per_recheck,
        "segments": [{"segment": s} for s in range(total)],
        "startedAt": int(header["startedAt"]),
        "resumed": not new,
        "mode": settings.mode,
        "capacity": {"source": src_cap, "target": tgt_cap, "throughputPercent": values["throughputPercent"]},
    }
