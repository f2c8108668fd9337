"""The bidirectional writer: last-writer-wins with tombstones and echo markers, many changes per transaction.

Every delete made by replication also leaves an echo marker (see `echoes`) and removes exactly the
version it read, so the stream's REMOVE of it is recognised and never travels back; duplicates are
told apart from stale writes. Both stream_relay (its own repairs) and relay_applier write through it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ..core.changes import Change, Op
from ..core.codec import Image, item_size
from ..core.errors import PermanentError, RetryableError, classify, error_code
from ..core.settings import VersionAttrs
from ..core.versions import Version, older_than, same_version, version_of
from ..table.tombstones import TOMBSTONE_ATTRS, Tombstones
from ..table.writer import Outcome, Result, TableWriter, canonical_key
from .echoes import identity

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


class MarkedWriter(TableWriter):
    """Last-writer-wins with tombstones and echo markers, as both bidirectional functions write."""

    tombstones: Tombstones

    def __init__(
        self, client: Any, table: str, *, attrs: VersionAttrs, tombstones: Tombstones, concurrency: int
    ) -> None:
        super().__init__(client, table, mode="lww", attrs=attrs, tombstones=tombstones, concurrency=concurrency)

    def apply(self, changes: Iterable[Change]) -> dict[str, Result]:
        """Write every change (distinct keys) in grouped transactions, returning each key's outcome or error."""
        results: dict[str, Result] = {}
        self._marked(self._sized(changes, results), results)
        return results

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
        wanted = {canonical_key(c.key): c for c in changes}
        found: dict[str, Image | None] = {c.key_id: None for c in changes}
        keys = [c.key for c in wanted.values()]
        names = tuple(keys[0]) if keys else ()
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {self.table: {"Keys": keys[start : start + 100], "ConsistentRead": True}}
            for attempt in range(self.batch_rounds):
                self._count_request()
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table, []):
                    change = wanted.get(canonical_key({n: item[n] for n in names}))
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
        return same_version(version, self.attrs).kwargs()

    def _marker_put(self, key_id: str, version: Version | None, image: Image) -> dict[str, Any]:
        ident = identity(version, image)
        assert ident is not None
        return {"Put": {"TableName": self.tombstones.table, "Item": self.tombstones.marker(key_id, ident)}}
