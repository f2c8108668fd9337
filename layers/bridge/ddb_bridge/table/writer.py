"""Writes changes to a table: unconditional batches in stream order, or last-writer-wins conditions.

`ordered` mode (one-way, no stamps needed) writes distinct keys with BatchWriteItem, 25 at a time.
`lww` mode writes each change with a ConditionExpression so DynamoDB itself refuses anything older
than what it holds. With a tombstone table, deletes leave a (key, version) memory and puts check it
in the same transaction, so a late older put cannot resurrect a deleted item (docs/design.md#deletes).
The bidirectional functions write through their own read-decide-write path (`relay.apply`).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from ..core.changes import Change, Op
from ..core.codec import MAX_ITEM_BYTES, Image, item_size
from ..core.errors import PermanentError, RetryableError, classify, error_code
from ..core.settings import VersionAttrs
from ..core.versions import (
    Condition,
    Version,
    beats_stored,
    micros_of_ms,
    older_than,
    unchanged,
    version_of,
    wins,
)
from .tombstones import TOMBSTONE_ATTRS, Tombstones

BATCH_WRITE_MAX = 25


class Outcome(StrEnum):
    """What became of one change."""

    APPLIED = "applied"
    STALE = "stale"
    DUPLICATE = "duplicate"  # only from relay.apply.Applier: that very version was already there


Result = Outcome | PermanentError | RetryableError


GUARD_MAX_CHARS = 4000  # DynamoDB refuses expressions over 4 KB


def same_content(expected: Image | None, key_names: tuple[str, ...], written: Image | None = None) -> Condition | None:
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


def check_size(change: Change) -> None:
    """Refuse, as a permanent error, an item DynamoDB would reject for size."""
    if change.item is not None:
        size = item_size(change.item)
        if size > MAX_ITEM_BYTES:
            raise PermanentError("ItemTooLarge", f"item is {size} bytes, over DynamoDB's {MAX_ITEM_BYTES} limit")


def transaction_result(exc: ClientError) -> Result:
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
    ) -> None:
        self.client = client
        self.table = table
        self.mode = mode
        self.attrs = attrs
        self.tombstones = tombstones
        self.concurrency = concurrency
        self.sleep = sleep
        self.batch_rounds = batch_rounds
        self.requests = 0  # write requests sent (for benchmarks and reports)
        self._lock = threading.Lock()

    def _count_request(self) -> None:
        with self._lock:  # writes run on worker threads
            self.requests += 1

    # -- public -------------------------------------------------------------------------------
    def apply(self, changes: Iterable[Change]) -> dict[str, Result]:
        """Write every change (distinct keys), returning each key's outcome or error."""
        results: dict[str, Result] = {}
        valid = self._sized(changes, results)
        if self.mode == "ordered":
            self._ordered(valid, results)
        else:
            self._run_parallel(valid, self._one_lww, results)
        return results

    @staticmethod
    def _sized(changes: Iterable[Change], results: dict[str, Result]) -> list[Change]:
        """The changes DynamoDB can take; an item over 400 KB gets its permanent error in `results`."""
        valid: list[Change] = []
        for change in changes:
            try:
                check_size(change)
                valid.append(change)
            except PermanentError as exc:
                results[change.key_id] = exc
        return valid

    def apply_guarded(self, changes: Iterable[tuple[Change, Image | None]]) -> dict[str, Result]:
        """Write each change only if the table still holds exactly what was read (`expected`; None: no item).

        The repair rule (verify): nothing written since that read is ever overwritten. In `lww` mode a put
        is written only if it wins over `expected` on normalised versions (`wins`), so a repair never rolls
        an item back; the decision is taken here, on the state read, and the condition keeps that state.
        A condition that fails, or a put that loses, is STALE. When the item has too many attributes to
        spell out, `lww` guards the raw version stamp it read (`core.versions.unchanged`) and `ordered`
        refuses (PermanentError): it has nothing else to go by.
        """
        plans: list[tuple[Change, Condition | Result]] = []
        for change, expected in changes:
            try:
                check_size(change)
            except PermanentError as exc:
                plans.append((change, exc))
                continue
            if (
                self.mode == "lww"
                and change.op is Op.PUT
                and not wins(change.version, version_of(expected, self.attrs))
            ):
                plans.append((change, Outcome.STALE))
                continue
            plans.append((change, self._guard(change, expected)))
        results: dict[str, Result] = {c.key_id: g for c, g in plans if not isinstance(g, Condition)}
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
        guard = same_content(expected, tuple(change.key), change.item)
        if guard is not None:
            return guard
        if self.mode == "lww":
            return unchanged(expected, self.attrs)
        return PermanentError(
            "GuardTooLarge",
            f"the item has too many attributes ({len(expected or {})}) to guard the write in one "
            "condition; repair it by hand while writes are frozen",
        )

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
            unprocessed = self.batch_write({self.table: requests})
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
            if canonical_key(change.key) in left:
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

    def batch_write(self, request_items: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
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
            items = {c.key_id: self.tombstones.item(c.key_id, delete_stamp(c)) for c in chunk}
            try:
                left = self.batch_write(
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
        """One change, by version: the fast-path condition, then (when it fails) the decision in code.

        A failed condition hands back the stored item; if the change still wins on normalised versions
        (docs/design.md#version-stamps), it is written again guarded by the exact raw stamp it read.
        """
        guard: Image | None = None
        fast = True
        for attempt in range(self.batch_rounds):
            condition = beats_stored(change.version, self.attrs) if fast else unchanged(guard, self.attrs)
            try:
                self._count_request()
                if self.tombstones is None:
                    kwargs = {**condition.kwargs(), "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
                    if change.op is Op.PUT:
                        self.client.put_item(TableName=self.table, Item=change.item, **kwargs)
                    else:
                        self.client.delete_item(TableName=self.table, Key=change.key, **kwargs)
                else:
                    self.client.transact_write_items(TransactItems=self._transaction(change, condition.kwargs()))
                return Outcome.APPLIED
            except ClientError as exc:
                code = error_code(exc)
                if code == "ConditionalCheckFailedException":
                    stored = exc.response.get("Item")
                elif code == "TransactionCanceledException":
                    verdict = self._cancelled(change, exc.response.get("CancellationReasons") or [])
                    if verdict is None:  # a conflict with another write: again, after a pause
                        self.sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))
                        continue
                    if not isinstance(verdict, dict):
                        return verdict
                    stored = verdict["Item"]
                else:
                    return classify(exc)
            except Exception as exc:  # noqa: BLE001 - classified
                return classify(exc)
            if not wins(change.version, version_of(stored, self.attrs)):
                return Outcome.STALE
            fast, guard = False, stored
        return RetryableError("ConditionRetries", "the item kept changing under every guarded write")

    @staticmethod
    def _cancelled(change: Change, reasons: list[dict[str, Any]]) -> Result | dict[str, Any] | None:
        """A cancelled lww transaction: its outcome, the stored item to decide on, or None to send it again."""
        codes = [r.get("Code", "None") for r in reasons]
        if "ValidationError" in codes:
            return PermanentError("ValidationException", "the transaction refused the change (validation)")
        table_at, tomb_at = (1, 0) if change.op is Op.PUT else (0, 1)
        if len(codes) != 2 or any(c not in ("None", "ConditionalCheckFailed") for c in codes):
            return None
        if codes[tomb_at] == "ConditionalCheckFailed":
            return Outcome.STALE  # a tombstone at least as new
        if codes[table_at] == "ConditionalCheckFailed":
            return {"Item": reasons[table_at].get("Item")}
        return None

    def _transaction(self, change: Change, mine: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.tombstones is not None
        tomb = older_than(change.version, TOMBSTONE_ATTRS).kwargs()
        tomb_key = self.tombstones.key_of(change.key_id)
        table_action = {**mine, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        if change.op is Op.PUT:
            return [
                {"ConditionCheck": {"TableName": self.tombstones.table, "Key": tomb_key, **tomb}},
                {"Put": {"TableName": self.table, "Item": change.item, **table_action}},
            ]
        return [
            {"Delete": {"TableName": self.table, "Key": change.key, **table_action}},
            {
                "Put": {
                    "TableName": self.tombstones.table,
                    "Item": self.tombstones.item(change.key_id, delete_stamp(change)),
                    **tomb,
                }
            },
        ]

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


def delete_stamp(change: Change) -> Version:
    """A delete's version, or (a change without one) its stream time: what its tombstone remembers."""
    return change.version or Version(micros_of_ms(change.approx_ms), "")


def canonical_key(key: Image) -> str:
    """A key's identity in the client form (binary as bytes), to match responses to requests."""
    return json.dumps(key, sort_keys=True, default=lambda b: bytes(b).hex())


def _key_identity(request: dict[str, Any], names: tuple[str, ...]) -> str:
    """The key of a BatchWriteItem request, in the same canonical form as `canonical_key`."""
    if "PutRequest" in request:
        item = request["PutRequest"]["Item"]
        return canonical_key({n: item[n] for n in names})
    return canonical_key(request["DeleteRequest"]["Key"])
