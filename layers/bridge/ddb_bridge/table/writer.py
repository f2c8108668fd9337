"""Writes changes to a table: unconditional batches in stream order, or last-writer-wins conditions.

`ordered` mode (one-way, no stamps needed) writes distinct keys with BatchWriteItem, 25 at a time.
`lww` mode writes each change with a ConditionExpression so DynamoDB itself refuses anything older
than what it holds. With a tombstone table, deletes leave a (key, version) memory and puts check it
in the same transaction, so a late older put cannot resurrect a deleted item (DESIGN.md §4).
With `echo_markers` (bidirectional), every delete made by replication also leaves an echo marker
(see `echoes`), reads the exact version it removes, and duplicates are told apart from stale writes.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from ..core.changes import Change, Op
from ..core.codec import MAX_ITEM_BYTES, Image, item_size
from ..core.errors import PermanentError, RetryableError, classify, error_code
from ..core.settings import VersionAttrs
from ..core.versions import Condition, Version, older_than, version_of
from ..relay.echoes import identity
from .tombstones import TOMBSTONE_ATTRS, Tombstones

BATCH_WRITE_MAX = 25


class Outcome(StrEnum):
    """What became of one change."""

    APPLIED = "applied"
    STALE = "stale"
    DUPLICATE = "duplicate"  # only from TableWriter(echo_markers=True): that very version was already there


Result = Outcome | PermanentError | RetryableError


GUARD_MAX_CHARS = 4000  # DynamoDB refuses expressions over 4 KB


def unchanged(expected: Image | None, key_names: tuple[str, ...], written: Image | None = None) -> Condition | None:
    """Condition: the stored item is still exactly `expected` (None: there is still no item).

    Every attribute of `expected` must hold the same value (DynamoDB compares numbers as numbers, sets as
    sets, maps and lists as a whole); attributes that `written` adds must still be absent. None when the
    condition would exceed DynamoDB's 4 KB expression limit (an item with a few hundred attributes).
    """
    names = {"#g0": key_names[0]}
    if expected is None:
        return Condition("attribute_not_exists(#g0)", names, {})
    parts = ["attribute_exists(#g0)"]
    values: dict[str, Any] = {}
    others = [n for n in sorted(expected) if n not in key_names]
    added = sorted(set(written or {}) - set(expected))
    for i, name in enumerate([*others, *added], start=1):
        names[f"#g{i}"] = name
        if name not in expected:
            parts.append(f"attribute_not_exists(#g{i})")
        elif "NULL" in expected[name]:  # equality is not defined on NULL: its type says it all
            values[f":g{i}"] = {"S": "NULL"}
            parts.append(f"attribute_type(#g{i}, :g{i})")
        else:
            values[f":g{i}"] = expected[name]
            parts.append(f"#g{i} = :g{i}")
    expression = " AND ".join(parts)
    return Condition(expression, names, values) if len(expression) <= GUARD_MAX_CHARS else None


TRANSACT_MAX_ACTIONS = 100
TRANSACT_MAX_BYTES = 3_500_000  # DynamoDB refuses transactions over 4 MB


@dataclass
class _Plan:
    """The transaction actions of one change (`kind`: put, delete, or a tombstone for an absent item)."""

    change: Change
    kind: str
    items: list[dict[str, Any]]
    size: int


def _groups(plans: list[_Plan]) -> list[list[_Plan]]:
    """Plans cut into transactions of at most 100 actions and under 4 MB."""
    groups: list[list[_Plan]] = []
    current: list[_Plan] = []
    actions = size = 0
    for plan in plans:
        if current and (actions + len(plan.items) > TRANSACT_MAX_ACTIONS or size + plan.size > TRANSACT_MAX_BYTES):
            groups.append(current)
            current, actions, size = [], 0, 0
        current.append(plan)
        actions += len(plan.items)
        size += plan.size + 1024
    if current:
        groups.append(current)
    return groups


def check_size(change: Change) -> None:
    """Refuse, as a permanent error, an item DynamoDB would reject for size."""
    if change.item is not None:
        size = item_size(change.item)
        if size > MAX_ITEM_BYTES:
            raise PermanentError("ItemTooLarge", f"item is {size} bytes, over DynamoDB's {MAX_ITEM_BYTES} limit")


def _transaction_result(exc: ClientError) -> Result:
    """A cancelled transaction: stale when only conditions failed, else classify the reasons."""
    reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
    meaningful = [r for r in reasons if r not in ("None", "ConditionalCheckFailed")]
    if not meaningful:
        return Outcome.STALE
    if any(r == "ValidationError" for r in meaningful):
        return PermanentError("ValidationException", f"transaction cancelled: {reasons}")
    return RetryableError("TransactionCanceled", f"transaction cancelled: {reasons}")


class TableWriter:
    """Applies coalesced changes (one per key) to one table, concurrently across keys."""

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        mode: str,
        attrs: VersionAttrs,
        tombstones: Tombstones | None = None,
        concurrency: int = 16,
        sleep: Callable[[float], None] = time.sleep,
        batch_rounds: int = 8,
        echo_markers: bool = False,
    ) -> None:
        if echo_markers and (tombstones is None or mode != "lww"):
            raise ValueError("echo_markers needs mode='lww' and a tombstone table")
        self.client = client
        self.table = table
        self.mode = mode
        self.attrs = attrs
        self.tombstones = tombstones
        self.concurrency = concurrency
        self.sleep = sleep
        self.batch_rounds = batch_rounds
        self.echo_markers = echo_markers
        self.requests = 0  # write requests sent (for benchmarks and reports)
        self._lock = threading.Lock()

    @classmethod
    def bidirectional(
        cls, client: Any, table: str, *, attrs: VersionAttrs, tombstones: Tombstones, concurrency: int
    ) -> TableWriter:
        """The writer both relay and applier use: last-writer-wins, tombstones, echo markers."""
        return cls(
            client, table, mode="lww", attrs=attrs, tombstones=tombstones, concurrency=concurrency, echo_markers=True
        )

    def _count_request(self) -> None:
        with self._lock:  # writes run on worker threads
            self.requests += 1

    # -- public -------------------------------------------------------------------------------
    def apply(self, changes: Iterable[Change]) -> dict[str, Result]:
        """Write every change (distinct keys), returning each key's outcome or error."""
        results: dict[str, Result] = {}
        valid: list[Change] = []
        for change in changes:
            try:
                check_size(change)
                valid.append(change)
            except PermanentError as exc:
                results[change.key_id] = exc
        if self.mode == "ordered":
            self._ordered(valid, results)
        elif self.echo_markers:
            self._marked(valid, results)
        else:
            self._run_parallel(valid, self._one_lww, results)
        return results

    def apply_guarded(self, changes: Iterable[tuple[Change, Image | None]]) -> dict[str, Result]:
        """Write each change only if the table still holds exactly what was read (`expected`; None: no item).

        The repair rule (verify): nothing written since that read is ever overwritten. In `lww` mode a put
        must also be newer than the stored version (`older_than`), so a repair never rolls an item back.
        A condition that fails is STALE. When the item has too many attributes to spell out, `lww` falls
        back on the versions alone and `ordered` refuses (PermanentError): it has nothing else to go by.
        """
        plans: list[tuple[Change, Condition | PermanentError]] = []
        for change, expected in changes:
            try:
                check_size(change)
            except PermanentError as exc:
                plans.append((change, exc))
                continue
            plans.append((change, self._guard(change, expected)))
        results: dict[str, Result] = {c.key_id: g for c, g in plans if isinstance(g, PermanentError)}
        conditions = {c.key_id: g for c, g in plans if isinstance(g, Condition)}

        def write(change: Change) -> Result:
            try:
                self._count_request()
                kwargs = conditions[change.key_id].kwargs()
                if change.op is Op.PUT:
                    self.client.put_item(TableName=self.table, Item=change.item, **kwargs)
                else:
                    self.client.delete_item(TableName=self.table, Key=change.key, **kwargs)
                return Outcome.APPLIED
            except ClientError as exc:
                return Outcome.STALE if error_code(exc) == "ConditionalCheckFailedException" else classify(exc)
            except Exception as exc:  # noqa: BLE001 - classified
                return classify(exc)

        self._run_parallel([c for c, g in plans if isinstance(g, Condition)], write, results)
        return results

    def _guard(self, change: Change, expected: Image | None) -> Condition | PermanentError:
        key_names = tuple(change.key)
        guard = unchanged(expected, key_names, change.item)
        newer = older_than(change.version, self.attrs) if self.mode == "lww" and change.op is Op.PUT else None
        if guard is None:
            if self.mode != "lww":
                return PermanentError(
                    "GuardTooLarge",
                    f"the item has too many attributes ({len(expected or {})}) to guard the write in one "
                    "condition; repair it by hand while writes are frozen",
                )
            if newer is not None:
                return newer
            return Condition(**_as_condition(self._exactly(version_of(expected, self.attrs))))
        return guard.both(newer) if newer is not None else guard

    # -- ordered: BatchWriteItem --------------------------------------------------------------
    def _ordered(self, changes: list[Change], results: dict[str, Result]) -> None:
        if self.tombstones is not None:
            deletes = [c for c in changes if c.op is Op.DELETE]
            failed = self._batch_write_tombstones(deletes)
            for change in deletes:
                if change.key_id in failed:
                    results[change.key_id] = failed[change.key_id]
            changes = [c for c in changes if c.key_id not in failed]
        chunks = [changes[i : i + BATCH_WRITE_MAX] for i in range(0, len(changes), BATCH_WRITE_MAX)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(chunks)))) as pool:
            for chunk_results in pool.map(self._write_chunk, chunks):
                results.update(chunk_results)

    def _write_chunk(self, chunk: list[Change]) -> dict[str, Result]:
        requests = [self._request_of(c) for c in chunk]
        try:
            unprocessed = self._batch_write({self.table: requests})
        except Exception as exc:  # noqa: BLE001 - classified below
            error = classify(exc)
            if isinstance(error, PermanentError) and len(chunk) > 1:
                # One bad item fails the whole request: write one by one to isolate it.
                return {c.key_id: self._one_ordered(c) for c in chunk}
            return {c.key_id: error for c in chunk}
        names = tuple(chunk[0].key)
        left = {_key_identity(r, names) for r in unprocessed.get(self.table, [])}
        out: dict[str, Result] = {}
        for change in chunk:
            if _canonical(change.key) in left:
                out[change.key_id] = RetryableError("UnprocessedItems", "still unprocessed after retries")
            else:
                out[change.key_id] = Outcome.APPLIED
        return out

    def _one_ordered(self, change: Change) -> Result:
        try:
            self._count_request()
            if change.op is Op.PUT:
                self.client.put_item(TableName=self.table, Item=change.item)
            else:
                self.client.delete_item(TableName=self.table, Key=change.key)
            return Outcome.APPLIED
        except Exception as exc:  # noqa: BLE001 - classified
            return classify(exc)

    @staticmethod
    def _request_of(change: Change) -> dict[str, Any]:
        if change.op is Op.PUT:
            return {"PutRequest": {"Item": change.item}}
        return {"DeleteRequest": {"Key": change.key}}

    def _batch_write(self, request_items: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        """BatchWriteItem with UnprocessedItems retried, exponential backoff with full jitter."""
        pending = request_items
        for attempt in range(self.batch_rounds):
            self._count_request()
            pending = self.client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not pending:
                return {}
            self.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
        return pending

    def _batch_write_tombstones(self, deletes: list[Change]) -> dict[str, Result]:
        assert self.tombstones is not None
        failed: dict[str, Result] = {}
        for i in range(0, len(deletes), BATCH_WRITE_MAX):
            chunk = deletes[i : i + BATCH_WRITE_MAX]
            items = {c.key_id: self.tombstones.item(c.key_id, c.version or Version(c.approx_ms, "")) for c in chunk}
            try:
                left = self._batch_write(
                    {self.tombstones.table: [{"PutRequest": {"Item": it}} for it in items.values()]}
                )
            except Exception as exc:  # noqa: BLE001 - classified
                failed.update({c.key_id: classify(exc) for c in chunk})
                continue
            left_keys = {r["PutRequest"]["Item"]["pk"]["S"] for r in left.get(self.tombstones.table, [])}
            for c in chunk:
                if items[c.key_id]["pk"]["S"] in left_keys:
                    failed[c.key_id] = RetryableError("UnprocessedItems", "tombstone still unprocessed")
        return failed

    # -- lww: conditional writes ----------------------------------------------------------------
    def _one_lww(self, change: Change) -> Result:
        condition = older_than(change.version, self.attrs)
        try:
            self._count_request()
            if self.tombstones is None:
                if change.op is Op.PUT:
                    self.client.put_item(TableName=self.table, Item=change.item, **condition.kwargs())
                else:
                    self.client.delete_item(TableName=self.table, Key=change.key, **condition.kwargs())
                return Outcome.APPLIED
            self.client.transact_write_items(TransactItems=self._transaction(change))
            return Outcome.APPLIED
        except ClientError as exc:
            code = error_code(exc)
            if code == "ConditionalCheckFailedException":
                return Outcome.STALE
            if code == "TransactionCanceledException":
                return _transaction_result(exc)
            return classify(exc)
        except Exception as exc:  # noqa: BLE001 - classified
            return classify(exc)

    def _transaction(self, change: Change) -> list[dict[str, Any]]:
        assert self.tombstones is not None
        mine = older_than(change.version, self.attrs).kwargs()
        tomb = older_than(change.version, TOMBSTONE_ATTRS).kwargs()
        tomb_key = self.tombstones.key_of(change.key_id)
        if change.op is Op.PUT:
            return [
                {"ConditionCheck": {"TableName": self.tombstones.table, "Key": tomb_key, **tomb}},
                {"Put": {"TableName": self.table, "Item": change.item, **mine}},
            ]
        version = change.version or Version(change.approx_ms, "")
        return [
            {"Delete": {"TableName": self.table, "Key": change.key, **mine}},
            {"Put": {"TableName": self.tombstones.table, "Item": self.tombstones.item(change.key_id, version), **tomb}},
        ]

    # -- lww with echo markers (bidirectional: relay_applier and stream_relay) -----------------------
    def remember_deletes(self, changes: list[Change]) -> dict[str, Result]:
        """Record local deletes (relay): their tombstones, then remove any older item that slipped in.

        A peer's older put can land between a local delete and its tombstone; it is removed here
        (with an echo marker, so that removal does not travel back).
        """
        tombstones: dict[str, Result] = {}
        self._marked(changes, tombstones, mode="tombstone")
        killed = self.kill_older_many(changes)
        out: dict[str, Result] = {}
        for change in changes:
            first, second = tombstones[change.key_id], killed[change.key_id]
            if isinstance(second, (PermanentError, RetryableError)):
                out[change.key_id] = second
            else:
                out[change.key_id] = Outcome.APPLIED if Outcome.APPLIED in (first, second) else first
        return out

    def kill_older_many(self, changes: list[Change]) -> dict[str, Result]:
        """Remove each item if it is older than its change's version, leaving echo markers (relay repairs).

        An item that changed meanwhile is left alone: that change has its own stream record.
        """
        results: dict[str, Result] = {}
        self._marked(changes, results, mode="kill")
        return results

    def _marked(self, changes: list[Change], results: dict[str, Result], mode: str = "apply") -> None:
        """Many changes per TransactWriteItems (up to 100 actions, under 4 MB), concurrently.

        A cancelled transaction names the action that failed: that change gets its outcome (stale,
        duplicate, an item changed since it was read), the others go again in the next round.
        `mode`: apply the changes; write only the tombstones of deletes; or kill older items.
        """
        pending = changes
        for attempt in range(self.batch_rounds):
            if not pending:
                return
            if attempt:
                self.sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))
            try:
                needed = (
                    []
                    if mode == "tombstone"
                    else pending
                    if mode == "kill"
                    else [c for c in pending if c.op is Op.DELETE or c.version is None]
                )
                current = self._read_many(needed)
            except Exception as exc:  # noqa: BLE001 - classified
                error = classify(exc)
                results.update(dict.fromkeys((c.key_id for c in pending), error))
                return
            plans: list[_Plan] = []
            for change in pending:
                planned = (
                    self._plan_kill(change, current.get(change.key_id))
                    if mode == "kill"
                    else self._plan(change, current.get(change.key_id))
                )
                if isinstance(planned, _Plan):
                    plans.append(planned)
                else:
                    results[change.key_id] = planned
            again: list[Change] = []
            groups = _groups(plans)
            workers = max(1, min(self.concurrency, len(groups)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for outcome in pool.map(self._send_group, groups):
                    for change, result in outcome:
                        if result is None:
                            again.append(change)
                        else:
                            results[change.key_id] = result
            pending = again
        for change in pending:
            results[change.key_id] = RetryableError("TransactionRetries", "still cancelled after every round")

    def _plan(self, change: Change, current: Image | None) -> _Plan | Result:
        """The transaction actions of one change, or its outcome when nothing needs writing."""
        assert self.tombstones is not None
        if change.op is Op.PUT:
            assert change.item is not None
            items = self._transaction(change)
            items[1]["Put"]["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
            if change.version is None:  # unstamped: nothing to filter the echo on but its content
                ident = identity(None, change.item)
                assert ident is not None
                if current is not None and version_of(current, self.attrs) is None and identity(None, current) == ident:
                    return Outcome.DUPLICATE  # the same content again: no order to decide by, nothing to write
                items.append(
                    {"Put": {"TableName": self.tombstones.table, "Item": self.tombstones.marker(change.key_id, ident)}}
                )
            return _Plan(change, "put", items, item_size(change.item))
        version = change.version or Version(change.approx_ms, "")
        tombstone = {
            "Put": {
                "TableName": self.tombstones.table,
                "Item": self.tombstones.item(change.key_id, version),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                **older_than(version, TOMBSTONE_ATTRS).kwargs(),
            }
        }
        if current is None:
            return _Plan(change, "tombstone", [tombstone], 0)
        stored = version_of(current, self.attrs)
        if stored is not None and stored > version:  # a delete wins an exact tie with a put
            return Outcome.STALE
        delete = {"Delete": {"TableName": self.table, "Key": change.key, **self._exactly(stored)}}
        return _Plan(change, "delete", [delete, tombstone, self._marker_put(change.key_id, stored, current)], 0)

    def _plan_kill(self, change: Change, current: Image | None) -> _Plan | Result:
        """Delete exactly the stored version, if it is older than the change (a delete wins a tie)."""
        stored = version_of(current, self.attrs)
        if current is None or change.version is None or (stored is not None and stored > change.version):
            return Outcome.STALE
        delete = {"Delete": {"TableName": self.table, "Key": change.key, **self._exactly(stored)}}
        return _Plan(change, "kill", [delete, self._marker_put(change.key_id, stored, current)], 0)

    def _send_group(self, group: list[_Plan]) -> list[tuple[Change, Result | None]]:
        """One transaction; each change's outcome, or None to send it again."""
        try:
            self._count_request()
            self.client.transact_write_items(TransactItems=[item for plan in group for item in plan.items])
            return [(plan.change, Outcome.APPLIED) for plan in group]
        except Exception as exc:  # noqa: BLE001 - classified
            if isinstance(exc, ClientError) and error_code(exc) == "TransactionCanceledException":
                reasons = exc.response.get("CancellationReasons") or []
            else:
                error = classify(exc)
                if isinstance(error, PermanentError) and len(group) > 1:
                    # One bad change refuses the whole request (e.g. a key of the wrong type): halve to find it.
                    half = len(group) // 2
                    return self._send_group(group[:half]) + self._send_group(group[half:])
                return [(plan.change, None if isinstance(error, RetryableError) else error) for plan in group]
        out: list[tuple[Change, Result | None]] = []
        position = 0
        for plan in group:
            mine = reasons[position : position + len(plan.items)]
            position += len(plan.items)
            out.append((plan.change, self._judge(plan, mine)))
        return out

    def _judge(self, plan: _Plan, reasons: list[dict[str, Any]]) -> Result | None:
        """What a cancelled transaction says of one change: its outcome, or None (send it again)."""
        codes = [r.get("Code", "None") for r in reasons]
        if len(codes) != len(plan.items) or all(code == "None" for code in codes):
            return None  # cancelled because of another change in the transaction
        if "ValidationError" in codes:
            message = next(r.get("Message", "") for r in reasons if r.get("Code") == "ValidationError")
            return PermanentError("ValidationException", f"transaction refused the change: {message}")
        if any(code not in ("None", "ConditionalCheckFailed") for code in codes):
            return None  # TransactionConflict, throttling...: again, after a pause
        if plan.kind == "kill":
            return Outcome.STALE  # the item changed meanwhile: its own stream record will be judged
        if plan.kind == "put":
            if codes[0] == "ConditionalCheckFailed":
                return Outcome.STALE  # a tombstone at least as new
            stored = reasons[1].get("Item")
            same = version_of(stored, self.attrs) == plan.change.version
            unstamped_same = plan.change.version is not None or identity(None, stored) == identity(
                None, plan.change.item
            )
            return Outcome.DUPLICATE if stored is not None and same and unstamped_same else Outcome.STALE
        tombstone_reason = reasons[0] if plan.kind == "tombstone" else reasons[1]
        if tombstone_reason.get("Code") == "ConditionalCheckFailed":
            version = plan.change.version or Version(plan.change.approx_ms, "")
            return self._tombstone_outcome(tombstone_reason, version)
        return None  # the item changed between the read and the delete: read it again

    def _read_many(self, changes: list[Change]) -> dict[str, Image | None]:
        """The current items of these keys (consistent BatchGetItem), by key id."""
        wanted = {_canonical(c.key): c for c in changes}
        found: dict[str, Image | None] = {c.key_id: None for c in changes}
        keys = [c.key for c in wanted.values()]
        names = tuple(keys[0]) if keys else ()
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {self.table: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            for attempt in range(self.batch_rounds):
                self._count_request()
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table, []):
                    change = wanted.get(_canonical({n: item[n] for n in names}))
                    if change is not None:
                        found[change.key_id] = dict(item)
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                self.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
            else:
                raise RetryableError("UnprocessedKeys", "reads still unprocessed after retries")
        return found

    @staticmethod
    def _tombstone_outcome(response: dict[str, Any], version: Version) -> Outcome:
        """A refused tombstone write: the same delete again, or an older one than what is remembered."""
        existing = version_of(response.get("Item"), TOMBSTONE_ATTRS)
        return Outcome.DUPLICATE if existing == version else Outcome.STALE

    def _exactly(self, version: Version | None) -> dict[str, Any]:
        """Condition: the stored item still has exactly this version (unstamped: still no timestamp)."""
        if version is None:
            return {
                "ConditionExpression": "attribute_not_exists(#ts)",
                "ExpressionAttributeNames": {"#ts": self.attrs.ts},
            }
        if not version.origin:
            return {
                "ConditionExpression": "#ts = :ts",
                "ExpressionAttributeNames": {"#ts": self.attrs.ts},
                "ExpressionAttributeValues": {":ts": {"N": str(version.ts)}},
            }
        return {
            "ConditionExpression": "#ts = :ts AND #o = :o",
            "ExpressionAttributeNames": {"#ts": self.attrs.ts, "#o": self.attrs.origin},
            "ExpressionAttributeValues": {":ts": {"N": str(version.ts)}, ":o": {"S": version.origin}},
        }

    def _marker_put(self, key_id: str, version: Version | None, image: Image) -> dict[str, Any]:
        assert self.tombstones is not None
        ident = identity(version, image)
        assert ident is not None
        return {"Put": {"TableName": self.tombstones.table, "Item": self.tombstones.marker(key_id, ident)}}

    # -- shared -----------------------------------------------------------------------------------
    def _run_parallel(
        self, changes: list[Change], write: Callable[[Change], Result], results: dict[str, Result]
    ) -> None:
        if len(changes) <= 1 or self.concurrency == 1:
            results.update({c.key_id: write(c) for c in changes})
            return
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(changes))) as pool:
            for change, result in zip(changes, pool.map(write, changes), strict=True):
                results[change.key_id] = result


def _as_condition(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`_exactly`'s keyword arguments as Condition fields."""
    return {
        "expression": kwargs["ConditionExpression"],
        "names": kwargs["ExpressionAttributeNames"],
        "values": kwargs.get("ExpressionAttributeValues", {}),
    }


def _canonical(key: Image) -> str:
    return json.dumps(key, sort_keys=True, default=lambda b: bytes(b).hex())


def _key_identity(request: dict[str, Any], names: tuple[str, ...]) -> str:
    """The key of a BatchWriteItem request, in the same canonical form as `_canonical`."""
    if "PutRequest" in request:
        item = request["PutRequest"]["Item"]
        return _canonical({n: item[n] for n in names})
    return _canonical(request["DeleteRequest"]["Key"])
