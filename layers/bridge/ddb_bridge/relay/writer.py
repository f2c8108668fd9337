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
from ..core.versions import Version, beats_stored, older_than, recorded_version, unchanged, version_of, wins
from ..table.tombstones import TOMBSTONE_ATTRS, Tombstones
from ..table.writer import Outcome, Result, TableWriter, canonical_key, delete_stamp
from .echoes import identity

TRANSACT_MAX_ACTIONS = 100
TRANSACT_MAX_BYTES = 3_500_000  # DynamoDB refuses transactions over 4 MB


@dataclass
class _Plan:
    """The transaction actions of one change (`kind`: put, delete, kill, or a tombstone for an absent item)."""

    change: Change
    kind: str
    items: list[dict[str, Any]]
    size: int


@dataclass(frozen=True)
class _Again:
    """A change to send again.

    `alone` when it caused its transaction's cancellation (so it cannot cancel its neighbours again);
    `learned` with the stored item to guard by, when code decided on normalised versions that it wins.
    """

    alone: bool = False
    learned: bool = False
    stored: Image | None = None
    error: RetryableError | None = None  # what failed, reported if every round fails


_Verdict = Result | _Again


def _groups(plans: list[_Plan], alone: set[str]) -> list[list[_Plan]]:
    """Plans cut into transactions of at most 100 actions and under 4 MB; a change in `alone` goes by itself."""
    groups: list[list[_Plan]] = [[plan] for plan in plans if plan.change.key_id in alone]
    current: list[_Plan] = []
    actions = size = 0
    for plan in plans:
        if plan.change.key_id in alone:
            continue
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
        duplicate), or goes again *alone*, so one change that keeps failing never takes the others in
        its transaction down with it; they go again together in the next round.
        `mode`: apply the changes; write only the tombstones of deletes; or kill older items.
        """
        pending = changes
        alone: set[str] = set()
        learned: dict[str, Image | None] = {}  # puts that lost the fast path but win in code: guard by these
        last_error: dict[str, RetryableError] = {}
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
                    else self._plan(change, current.get(change.key_id), learned, mode)
                )
                if isinstance(planned, _Plan):
                    plans.append(planned)
                else:
                    results[change.key_id] = planned
            again: list[Change] = []
            groups = _groups(plans, alone)
            alone = set()
            workers = max(1, min(self.concurrency, len(groups)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for outcome in pool.map(self._send_group, groups):
                    for change, verdict in outcome:
                        if isinstance(verdict, _Again):
                            again.append(change)
                            if verdict.alone:
                                alone.add(change.key_id)
                            if verdict.learned:
                                learned[change.key_id] = verdict.stored
                            if verdict.error is not None:
                                last_error[change.key_id] = verdict.error
                        else:
                            results[change.key_id] = verdict
            pending = again
        for change in pending:
            results[change.key_id] = last_error.get(change.key_id) or RetryableError(
                "TransactionRetries", "still cancelled after every round"
            )

    def _plan(
        self, change: Change, current: Image | None, learned: dict[str, Image | None], mode: str
    ) -> _Plan | Result:
        """The transaction actions of one change, or its outcome when nothing needs writing."""
        if change.op is Op.PUT:
            assert change.item is not None
            if change.key_id in learned:
                condition = unchanged(learned[change.key_id], self.attrs)
            else:
                condition = beats_stored(change.version, self.attrs)
            items = self._transaction(change, condition.kwargs())
            if change.version is None:  # unstamped: nothing to filter the echo on but its content
                ident = identity(None, change.item)
                assert ident is not None
                if current is not None and version_of(current, self.attrs) is None and identity(None, current) == ident:
                    return Outcome.DUPLICATE  # the same content again: no order to decide by, nothing to write
                items.append(
                    {"Put": {"TableName": self.tombstones.table, "Item": self.tombstones.marker(change.key_id, ident)}}
                )
            return _Plan(change, "put", items, item_size(change.item))
        version = delete_stamp(change)
        tombstone = {
            "Put": {
                "TableName": self.tombstones.table,
                "Item": self.tombstones.item(change.key_id, version),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                **older_than(version, TOMBSTONE_ATTRS).kwargs(),
            }
        }
        if mode == "tombstone" or current is None:
            return _Plan(change, "tombstone", [tombstone], 0)
        stored = version_of(current, self.attrs)
        if stored is not None and stored > version:  # a delete wins an exact tie with a put
            return Outcome.STALE
        delete = {"Delete": {"TableName": self.table, "Key": change.key, **unchanged(current, self.attrs).kwargs()}}
        return _Plan(change, "delete", [delete, tombstone, self._marker_put(change.key_id, stored, current)], 0)

    def _plan_kill(self, change: Change, current: Image | None) -> _Plan | Result:
        """Delete exactly the stored item, if it is older than the change (a delete wins a tie)."""
        stored = version_of(current, self.attrs)
        if current is None or change.version is None or (stored is not None and stored > change.version):
            return Outcome.STALE
        delete = {"Delete": {"TableName": self.table, "Key": change.key, **unchanged(current, self.attrs).kwargs()}}
        return _Plan(change, "kill", [delete, self._marker_put(change.key_id, stored, current)], 0)

    def _send_group(self, group: list[_Plan]) -> list[tuple[Change, _Verdict]]:
        """One transaction; each change's outcome, or what to do to send it again."""
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
                if isinstance(error, RetryableError) and not error.needs_operator:
                    return [(plan.change, _Again(error=error)) for plan in group]
                return [(plan.change, error) for plan in group]  # permanent, or no retry here can fix it
        out: list[tuple[Change, _Verdict]] = []
        position = 0
        attributable = len(reasons) == sum(len(plan.items) for plan in group)
        for plan in group:
            mine = reasons[position : position + len(plan.items)]
            position += len(plan.items)
            # Reasons that name no action: no telling which change failed, so each goes alone next time.
            out.append((plan.change, self._judge(plan, mine) if attributable else _Again(alone=len(group) > 1)))
        return out

    def _judge(self, plan: _Plan, reasons: list[dict[str, Any]]) -> _Verdict:
        """What a cancelled transaction says of one change: its outcome, or how to send it again."""
        codes = [r.get("Code", "None") for r in reasons]
        if all(code == "None" for code in codes):
            return _Again()  # cancelled because of another change in the transaction
        if "ValidationError" in codes:
            return PermanentError("ValidationException", "the transaction refused the change (validation)")
        if any(code not in ("None", "ConditionalCheckFailed") for code in codes):
            return _Again(alone=True)  # TransactionConflict, throttling...: again, by itself, after a pause
        if plan.kind == "kill":
            return Outcome.STALE  # the item changed meanwhile: its own stream record will be judged
        if plan.kind == "put":
            if codes[0] == "ConditionalCheckFailed":
                return Outcome.STALE  # a tombstone at least as new
            stored = reasons[1].get("Item")
            stored_version = version_of(stored, self.attrs)
            same_content = plan.change.version is not None or identity(None, stored) == identity(None, plan.change.item)
            if stored is not None and stored_version == plan.change.version and same_content:
                return Outcome.DUPLICATE
            if wins(plan.change.version, stored_version):  # lost only the fast path (another stamp form)
                return _Again(alone=True, learned=True, stored=stored)
            return Outcome.STALE
        tombstone_reason = reasons[0] if plan.kind == "tombstone" else reasons[1]
        if tombstone_reason.get("Code") == "ConditionalCheckFailed":
            return self._tombstone_outcome(tombstone_reason, delete_stamp(plan.change))
        return _Again(alone=True)  # the item changed between the read and the delete: read it again

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
        existing = recorded_version(response.get("Item"), TOMBSTONE_ATTRS)
        return Outcome.DUPLICATE if existing == version else Outcome.STALE

    def _marker_put(self, key_id: str, version: Version | None, image: Image) -> dict[str, Any]:
        ident = identity(version, image)
        assert ident is not None
        return {"Put": {"TableName": self.tombstones.table, "Item": self.tombstones.marker(key_id, ident)}}
