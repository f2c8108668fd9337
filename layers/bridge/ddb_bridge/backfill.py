"""The backfill (statemachine/backfill.asl.json): copy a table into an existing table, segment by segment.

A Map runs one loop per parallel-scan segment; each Lambda call copies pages of its segment until its
time budget is spent and returns where it stopped (`LastEvaluatedKey`), so every call is bounded and
the copy resumes. A checkpoint per segment (progress table) is the source of truth: it advances only
after a page is written, under a lease that keeps two calls off one segment, so a stopped backfill
started again with the same `backfillId` copies each item once and misses none.

Two ways to write (DESIGN.md §7):
- `overwrite`: BatchWriteItem, 25 per request, UnprocessedItems retried with backoff and jitter
  (`apply.TableWriter`). Only when nothing else writes the target (live replication not running).
- `live`: while live replication runs. Each item is a TransactWriteItems of a ConditionCheck on the
  tombstone table and a conditional Put, so the backfill never overwrites a newer live write nor
  resurrects a live delete. `lww` replication compares versions; `ordered` replication (no versions)
  only fills keys that the target does not hold and that no live delete removed.

The rate is a share of the tables' throughput: provisioned capacity, or for on-demand tables the
table's warm throughput (capped by its on-demand maximum), split evenly between the segments.
"""

from __future__ import annotations

import difflib
import json
import math
import random
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import ClientError

from .apply import BATCH_WRITE_MAX, TOMBSTONE_ATTRS, Outcome, TableWriter, Tombstones, _transaction_result
from .clients import client_config
from .codec import Image, decode_image, encode_image, item_size
from .errors import PermanentError, RetryableError, classify, error_code, is_credential_error
from .keys import key_id
from .observability import MetricUnit, logger, metrics
from .settings import BackfillSettings, VersionAttrs, load_backfill_settings
from .target_access import PeerKeys, TargetAccess
from .versions import Condition, older_than, version_of

Json = dict[str, Any]
WRITE_MODES = ("live", "overwrite")
ON_DEMAND_WARM_DEFAULT = {"read": 12000, "write": 4000}  # a new on-demand table's initial throughput
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
_WRITE_ATTEMPTS = 6
_LEASE_MARGIN_S = 120


class InvalidInput(ValueError):
    """The execution input is wrong; the message says which field and what it expects."""


@dataclass
class BackfillClients:
    """The source table's account, the target side's access, and the clock (tests pass fakes)."""

    source: Any
    target: TargetAccess
    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


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


# ---- progress ----------------------------------------------------------------------------------------------
class ProgressStore:
    """Checkpoints per segment, and a lease so that one call at a time copies a segment."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    @staticmethod
    def _key(backfill_id: str, part: str) -> Json:
        return {"pk": {"S": f"{backfill_id}#{part}"}}

    def header(self, backfill_id: str, values: Json, now: float) -> Json:
        """Create the backfill's header on its first run; on a later run, the header it was created with."""
        item = {
            **self._key(backfill_id, "plan"),
            "totalSegments": {"N": str(values["totalSegments"])},
            "writeMode": {"S": values["writeMode"]},
            "createdAt": {"N": str(int(now))},
            "expiresAt": {"N": str(int(now) + 30 * 86400)},
        }
        try:
            self.client.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)")
            return {"totalSegments": values["totalSegments"], "writeMode": values["writeMode"], "new": True}
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        found = self.client.get_item(TableName=self.table, Key=self._key(backfill_id, "plan"), ConsistentRead=True)[
            "Item"
        ]
        return {"totalSegments": int(found["totalSegments"]["N"]), "writeMode": found["writeMode"]["S"], "new": False}

    def existing(self, backfill_id: str) -> Json | None:
        """The header of an earlier run of this backfill, if any."""
        found = self.client.get_item(TableName=self.table, Key=self._key(backfill_id, "plan"), ConsistentRead=True).get(
            "Item"
        )
        if not found:
            return None
        return {"totalSegments": int(found["totalSegments"]["N"]), "writeMode": found["writeMode"]["S"]}

    def claim(self, backfill_id: str, segment: int, owner: str, now: float, lease_s: float) -> Json:
        """Take the segment's lease and return its checkpoint; RetryableError while another call holds it."""
        try:
            found = self.client.update_item(
                TableName=self.table,
                Key=self._key(backfill_id, str(segment)),
                ReturnValues="ALL_NEW",
                UpdateExpression="SET #owner = :me, leaseUntil = :until, expiresAt = :exp",
                ConditionExpression="attribute_not_exists(#owner) OR #owner = :me OR leaseUntil < :now",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={
                    ":me": {"S": owner},
                    ":until": {"N": str(now + lease_s)},
                    ":now": {"N": str(now)},
                    ":exp": {"N": str(int(now) + 30 * 86400)},
                },
            )["Attributes"]
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise RetryableError(
                    "SegmentBusy",
                    f"segment {segment} of backfill {backfill_id} is being copied by "
                    "another call (a stopped execution's call still finishing); retrying",
                ) from exc
            raise
        return _checkpoint(found)

    def save(self, backfill_id: str, segment: int, owner: str, progress: Json) -> None:
        """Advance the checkpoint, only while this call holds the lease."""
        values: Json = {
            ":me": {"S": owner},
            ":copied": {"N": str(progress["copied"])},
            ":skipped": {"N": str(progress["skipped"])},
            ":scanned": {"N": str(progress["scanned"])},
            ":pages": {"N": str(progress["pages"])},
            ":done": {"BOOL": progress["done"]},
            ":lek": {"S": json.dumps(progress["lastEvaluatedKey"])},
        }
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(backfill_id, str(segment)),
                UpdateExpression="SET copied = :copied, skipped = :skipped, scanned = :scanned, pages = :pages, "
                "done = :done, lastEvaluatedKey = :lek",
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise RetryableError("LeaseLost", f"segment {segment}: another call took the lease") from exc
            raise

    def release(self, backfill_id: str, segment: int, owner: str) -> None:
        """Give the lease back (the checkpoint stays)."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(backfill_id, str(segment)),
                UpdateExpression="REMOVE #owner",
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": {"S": owner}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def segments(self, backfill_id: str, total: int) -> list[Json]:
        """Every segment's checkpoint (consistent reads)."""
        keys = [self._key(backfill_id, str(s)) for s in range(total)]
        found: dict[str, Json] = {}
        for i in range(0, len(keys), 100):
            request: Json = {self.table: {"Keys": keys[i : i + 100], "ConsistentRead": True}}
            while request:
                page = self.client.batch_get_item(RequestItems=request)
                for item in page["Responses"].get(self.table, []):
                    found[item["pk"]["S"]] = item
                request = page.get("UnprocessedKeys") or {}
        return [_checkpoint(found.get(f"{backfill_id}#{s}", {})) for s in range(total)]


def _checkpoint(item: Json) -> Json:
    def n(name: str) -> int:
        return int(item[name]["N"]) if name in item else 0

    lek = json.loads(item["lastEvaluatedKey"]["S"]) if "lastEvaluatedKey" in item else None
    return {
        "copied": n("copied"),
        "skipped": n("skipped"),
        "scanned": n("scanned"),
        "pages": n("pages"),
        "done": bool(item.get("done", {}).get("BOOL", False)),
        "lastEvaluatedKey": lek,
    }


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


# ---- rate --------------------------------------------------------------------------------------------------
class RateLimiter:
    """A token bucket in capacity units per second (one second of burst); None means no limit."""

    def __init__(self, per_second: float | None, now: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.rate = per_second if per_second and per_second > 0 else None
        self.now = now
        self.sleep = sleep
        self.available = self.rate or 0.0
        self.last = now()
        self.waited = 0.0

    def spend(self, units: float) -> None:
        """Take `units`, sleeping as long as the debt takes to repay."""
        if self.rate is None or units <= 0:
            return
        now = self.now()
        self.available = min(self.rate, self.available + (now - self.last) * self.rate) - units
        self.last = now
        if self.available < 0:
            pause = -self.available / self.rate
            self.waited += pause
            self.sleep(pause)


def read_units(sizes: list[int], consistent: bool) -> float:
    """Read units of a Scan page of items of these sizes: 4 KB each, half for eventually consistent reads."""
    units = math.ceil(sum(sizes) / 4096)
    return units if consistent else units / 2


def write_units(sizes: list[int], transactional: bool) -> int:
    """Write units of putting items of these sizes: 1 KB each, twice for transactions."""
    units = sum(math.ceil(max(1, size) / 1024) for size in sizes)
    return units * 2 if transactional else units


# ---- writers -----------------------------------------------------------------------------------------------
def _backoff(attempt: int) -> float:
    return random.uniform(0, min(5.0, 0.05 * 2**attempt))


@dataclass
class Written:
    """What one page did to the target."""

    copied: int = 0
    skipped: int = 0
    retries: int = 0
    requests: int = 0


class OverwriteWriter:
    """BatchWriteItem, 25 items per request, concurrently, through `apply.TableWriter._batch_write`.

    That call retries UnprocessedItems with exponential backoff and full jitter; what is still left, or a
    throttled request, is sent again in the next round after another backoff.
    """

    def __init__(
        self,
        client: Any,
        table: str,
        attrs: VersionAttrs,
        *,
        pool: ThreadPoolExecutor,
        sleep: Callable[[float], None],
        rounds: int = _WRITE_ATTEMPTS,
    ) -> None:
        self.writer = TableWriter(client, table, mode="ordered", attrs=attrs, sleep=sleep)
        self.table = table
        self.pool = pool
        self.sleep = sleep
        self.rounds = rounds

    def _send(self, requests: list[Json]) -> tuple[list[Json], PermanentError | RetryableError | None]:
        try:
            return self.writer._batch_write({self.table: requests}).get(self.table, []), None
        except Exception as exc:  # noqa: BLE001 - classified: retried next round, or fails the call
            return requests, classify(exc)

    def write(self, items: list[Image]) -> Written:
        """Write every item; RetryableError if some stay unprocessed, PermanentError when DynamoDB refuses one."""
        pending: list[Json] = [{"PutRequest": {"Item": item}} for item in items]
        done = Written()
        before = self.writer.requests
        for attempt in range(self.rounds):
            chunks = [pending[i : i + BATCH_WRITE_MAX] for i in range(0, len(pending), BATCH_WRITE_MAX)]
            left: list[Json] = []
            for unprocessed, error in self.pool.map(self._send, chunks):
                if isinstance(error, PermanentError):
                    key = json.dumps(encode_image(unprocessed[0]["PutRequest"]["Item"]))[:200]
                    raise PermanentError(error.reason, f"the target refuses items (first: {key}): {error}")
                left.extend(unprocessed)
            done.copied += len(pending) - len(left)
            pending = left
            if not pending:
                break
            done.retries += len(pending)
            self.sleep(_backoff(attempt + 3))
        done.requests = self.writer.requests - before
        if pending:
            raise RetryableError(
                "UnprocessedItems",
                f"{len(pending)} items still unprocessed after {self.rounds} rounds of BatchWriteItem",
            )
        return done


class LiveWriter:
    """Conditional copies that lose to every live write and every live delete (tombstones)."""

    def __init__(
        self,
        client: Any,
        table: str,
        key_names: tuple[str, ...],
        tombstones: Tombstones,
        *,
        replication_mode: str,
        attrs: VersionAttrs,
        pool: ThreadPoolExecutor | None = None,
        sleep: Callable[[float], None],
        attempts: int = _WRITE_ATTEMPTS,
    ) -> None:
        self.client = client
        self.table = table
        self.key_names = key_names
        self.tombstones = tombstones
        self.replication_mode = replication_mode
        self.attrs = attrs
        self.pool = pool
        self.sleep = sleep
        self.attempts = attempts

    def transaction(self, item: Image) -> list[Json]:
        """The ConditionCheck on the tombstone and the conditional Put for one item."""
        key = {name: item[name] for name in self.key_names}
        version = version_of(item, self.attrs) if self.replication_mode == "lww" else None
        if version is None:
            # No version to compare (ordered replication, or an unstamped item): fill holes only.
            target = Condition("attribute_not_exists(#k)", {"#k": self.key_names[0]}, {})
            tomb = Condition("attribute_not_exists(pk)", {}, {})
        else:
            target = older_than(version, self.attrs)
            tomb = older_than(version, TOMBSTONE_ATTRS)
        tomb_kwargs = tomb.kwargs()
        if not tomb_kwargs["ExpressionAttributeNames"]:
            del tomb_kwargs["ExpressionAttributeNames"]
        return [
            {
                "ConditionCheck": {
                    "TableName": self.tombstones.table,
                    "Key": self.tombstones.key_of(key_id(encode_image(key))),
                    **tomb_kwargs,
                }
            },
            {"Put": {"TableName": self.table, "Item": item, **target.kwargs()}},
        ]

    def _one(self, item: Image) -> Outcome | PermanentError | RetryableError:
        try:
            self.client.transact_write_items(TransactItems=self.transaction(item))
            return Outcome.APPLIED
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                return _transaction_result(exc)
            return classify(exc)
        except Exception as exc:  # noqa: BLE001 - classified
            return classify(exc)

    def write(self, items: list[Image]) -> Written:
        """Copy what may be copied, skip what live replication owns; RetryableError when conflicts persist."""
        done = Written()
        pending = items
        for attempt in range(self.attempts):
            results = list(self.pool.map(self._one, pending)) if self.pool else [self._one(i) for i in pending]
            done.requests += len(pending)
            retry = []
            for item, result in zip(pending, results, strict=True):
                if result is Outcome.APPLIED:
                    done.copied += 1
                elif isinstance(result, Outcome):
                    done.skipped += 1  # a newer live write, or a live delete: replication owns this key
                elif isinstance(result, PermanentError):
                    raise PermanentError(
                        result.reason,
                        f"item {json.dumps(encode_image(item))[:300]} cannot be written to the target: {result}",
                    )
                else:
                    retry.append(item)  # throttled, or a transaction conflict with a live write
            pending = retry
            if not pending:
                return done
            done.retries += len(pending)
            self.sleep(_backoff(attempt + 3))
        raise RetryableError(
            "TransactionsFailing", f"{len(pending)} items still conflicting or throttled after {self.attempts} attempts"
        )


# ---- one call on one segment -------------------------------------------------------------------------------
@dataclass
class _Progress:
    copied: int = 0
    skipped: int = 0
    scanned: int = 0
    pages: int = 0
    done: bool = False
    last_key: Json | None = None
    seconds_throttled: float = 0.0
    retries: int = 0
    requests: int = field(default=0)

    def as_json(self) -> Json:
        return {
            "copied": self.copied,
            "skipped": self.skipped,
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
        _copy_loop(state, settings, clients, store, owner, progress, started, budget_seconds, writer)


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


# ---- dispatch, the Lambda ----------------------------------------------------------------------------------
def summarize(event: Json, clients: BackfillClients) -> Json:
    """Totals over the segments, for the execution's output; fails when a segment did not finish."""
    plan_ = event["plan"]
    raw = event.get("segments") or []
    results = [r for r in raw if isinstance(r, dict)]
    unfinished = sorted(
        {int(s["segment"]) for s in plan_.get("segments", [])} - {int(r["segment"]) for r in results if r.get("done")}
    )
    if unfinished:
        raise PermanentError(
            "SegmentsUnfinished",
            f"{len(unfinished)} of {len(raw) or len(unfinished)} segments did not finish ({unfinished[:20]}); see "
            f"their child executions for the error. Start a new execution with backfillId "
            f"{plan_['backfillId']!r} to resume: finished segments and pages are not copied again.",
        )
    seconds = max(0.001, clients.now() - float(plan_["startedAt"]))
    copied = sum(int(r.get("copied", 0)) for r in results)
    skipped = sum(int(r.get("skipped", 0)) for r in results)
    out = {
        "backfillId": plan_["backfillId"],
        "writeMode": plan_["writeMode"],
        "segments": len(results),
        "segmentsDone": sum(1 for r in results if r.get("done")),
        "copied": copied,
        "skipped": skipped,
        "scanned": sum(int(r.get("scanned", 0)) for r in results),
        "calls": sum(int(r.get("calls", 0)) for r in results),
        "writeRequests": sum(int(r.get("writeRequests", 0)) for r in results),
        "seconds": round(seconds, 3),
        "itemsPerSecond": round((copied + skipped) / seconds, 1),
        "perSegment": [
            {
                "segment": r.get("segment"),
                "copied": r.get("copied"),
                "skipped": r.get("skipped"),
                "calls": r.get("calls"),
            }
            for r in results
        ],
    }
    metrics.add_metric(name="BackfillItemsPerSecond", unit=MetricUnit.CountPerSecond, value=out["itemsPerSecond"])
    return out


def run_action(
    event: Json, settings: BackfillSettings, clients: BackfillClients, *, owner: str, budget_seconds: float
) -> Json:
    """One step of the workflow; AWS errors become RetryableError (retried) or PermanentError (fail)."""
    action = event.get("action")
    try:
        if action == "plan":
            return plan(event, settings, clients)
        if action == "copy":
            budget = min(budget_seconds, float(event.get("callSeconds") or budget_seconds))
            return copy_segment(event, settings, clients, owner=owner, budget_seconds=budget)
        if action == "summarize":
            return summarize(event, clients)
    except (PermanentError, RetryableError):
        raise
    except Exception as exc:  # every AWS error is classified for the state's Retry/Catch
        if is_credential_error(exc):
            clients.target.refresh()
        raise classify(exc) from exc
    raise PermanentError("UnknownAction", f"unknown action {action!r}; expected plan, copy or summarize")


@dataclass
class Runtime:
    """What a warm backfill function keeps between invocations."""

    settings: BackfillSettings
    clients: BackfillClients


@cache
def runtime() -> Runtime:
    """Settings and clients, built once per cold start; a bad setting fails here with its name."""
    settings = load_backfill_settings()
    config = client_config(max_attempts=8, pool=8)
    peer = PeerKeys(settings.peer) if settings.peer else None
    source = boto3.client("dynamodb", region_name=settings.source_region, config=config)
    return Runtime(settings, BackfillClients(source=source, target=TargetAccess(settings.target, peer)))


def handle(event: Json, context: Any) -> Json:
    """One workflow step; a copy call stops a minute before the function's timeout."""
    rt = runtime()
    budget = max(1.0, context.get_remaining_time_in_millis() / 1000 - 60)
    logger.append_keys(action=event.get("action"), backfillId=event.get("backfillId"))
    return run_action(event, rt.settings, rt.clients, owner=context.aws_request_id, budget_seconds=budget)
