"""The applier's write path: read, decide, write; no transaction, no second item for a put.

For a batch of changes (one per key, the newest):

1. Read, in consistent BatchGetItem calls (100 keys each, concurrently): the item, its `L#` record (the
   newest local change the relay versioned) and its `P#` record (the newest replicated delete).
2. Decide in code. The key's current version is the newest of the item's visible version (`states`), the
   local record's and the replicated delete's. A change applies iff it is newer; the same version is a
   duplicate; an older one is stale: nothing is written, nothing billed. An item whose version cannot be
   told (a local write the relay has not versioned yet, an item older than the bridge) counts as older
   than the change: it is overwritten or removed, and the relay, which sees that local write and then
   replication's write or REMOVE in its stream, puts the local write back if it was newer.
3. Write: puts with BatchWriteItem (25 per call, concurrently, the version in the bridge's attribute);
   deletes record their `P#` first (the delete and what it removes: the exact version, or a token of the
   content when the version cannot be told: the echo marker), then a DeleteItem guarded by the state that
   was read (re-read and decided again if it changed), so a delete is acknowledged only once both are done
   and a failed `P#` write never leaves an unremembered delete.
4. Re-read the `L#` records of the keys written: a local delete that landed between the read and the
   write makes the put a resurrection; it is removed again (with its marker).

One key is applied by one invocation at a time (the relay's packs keep each key in one lane), so no
condition is needed on the puts; what can still land between the read and the write is this region's
own application, handled above and by the relay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.changes import Change, Op
from ..core.codec import MAX_ITEM_BYTES, Image, item_size
from ..core.errors import PermanentError, RetryableError, classify
from ..core.versions import Version
from ..table.writer import Outcome, Result
from .local import Store, Write, item_key
from .sidetable import LocalRecord, PeerRecord
from .states import Versions, digest

_ROUNDS = 4


@dataclass
class _Read:
    """What one key looked like when read."""

    item: Image | None
    local: LocalRecord
    peer: PeerRecord


class Applier:
    """Applies the newest change of each key of a batch (module docstring)."""

    def __init__(self, store: Store, stamps: Versions) -> None:
        self.store = store
        self.stamps = stamps

    def apply(self, changes: list[Change]) -> dict[str, Result]:
        """Every change's outcome (applied, stale, duplicate) or error, by key id."""
        results: dict[str, Result] = {}
        sized: list[Change] = []
        for change in changes:
            if change.item is not None and item_size(change.item) + 128 > MAX_ITEM_BYTES:
                results[change.key_id] = PermanentError(
                    "ItemTooLarge", f"item is {item_size(change.item)} bytes, over DynamoDB's {MAX_ITEM_BYTES} limit"
                )
            else:
                sized.append(change)
        pending = sized
        for _ in range(_ROUNDS):
            if not pending:
                break
            try:
                reads = self._read(pending)
            except Exception as exc:  # noqa: BLE001 - every change of the batch is retried
                error = classify(exc)
                results.update(dict.fromkeys((c.key_id for c in pending), error))
                return results
            puts: list[tuple[Change, Image]] = []
            deletes: list[tuple[Change, _Read]] = []
            for change in pending:
                verdict = self._decide(change, reads[change.key_id])
                if verdict is None:
                    if change.op is Op.PUT:
                        puts.append((change, self._item_to_write(change)))
                    else:
                        deletes.append((change, reads[change.key_id]))
                else:
                    results[change.key_id] = verdict
            results.update(self._put(puts))
            again = self._delete(deletes, results)
            pending = again
        for change in pending:
            results[change.key_id] = RetryableError("ItemKeptChanging", "the item kept changing under every delete")
        return results

    # -- read and decide ------------------------------------------------------------------------------
    def _read(self, changes: list[Change]) -> dict[str, _Read]:
        side = self.store.side.table
        keys: dict[str, list[dict[str, Any]]] = {self.store.table: [], side: []}
        for change in changes:
            keys[self.store.table].append(change.key)
            keys[side].extend(self.store.side.keys_of(change.key_id))
        found = self.store.read(keys)
        out: dict[str, _Read] = {}
        for change in changes:
            local_key, peer_key = self.store.side.keys_of(change.key_id)
            out[change.key_id] = _Read(
                found.get((self.store.table, item_key(change.key, list(change.key)))),
                LocalRecord.of(found.get((side, item_key(local_key, ["pk"])))),
                PeerRecord.of(found.get((side, item_key(peer_key, ["pk"])))),
            )
        return out

    def _decide(self, change: Change, read: _Read) -> Result | None:
        """The outcome when nothing is to be written (stale, duplicate, deferred), else None (write it)."""
        version = change.version
        assert version is not None
        visible = self.stamps.visible(read.item, read.local) if read.item is not None else None
        known = [v for v in (visible, read.local.version, read.peer.version) if v is not None]
        current = max(known) if known else None
        if current is not None and version < current:
            return Outcome.STALE
        if current is not None and version == current:
            if change.op is Op.PUT:
                return Outcome.DUPLICATE
            if read.item is None:
                return Outcome.DUPLICATE
            if visible is not None and visible >= version:
                return Outcome.STALE
            return None  # a delete recorded before, whose item removal did not happen yet: finish it
        return None

    def _item_to_write(self, change: Change) -> Image:
        """The item as written: with the bridge's attribute (bridge-owned stamps, or a change without a stamp)."""
        assert change.item is not None and change.version is not None
        if self.stamps.bridge_owned or change.version.rank == 0:
            return self.stamps.mark(change.item, change.version)
        return {k: v for k, v in change.item.items() if k != self.stamps.bridge_attr}

    # -- puts -----------------------------------------------------------------------------------------
    def _put(self, puts: list[tuple[Change, Image]]) -> dict[str, Result]:
        if not puts:
            return {}
        writes = [Write(self.store.table, {"PutRequest": {"Item": item}}, change.key_id) for change, item in puts]
        errors = self.store.write(writes)
        results: dict[str, Result] = {}
        written = [(change, item) for change, item in puts if change.key_id not in errors]
        for owner, error in errors.items():
            results[str(owner)] = error
        results.update(self._recheck(written))
        return results

    def _recheck(self, written: list[tuple[Change, Image]]) -> dict[str, Result]:
        """Re-read the `L#` records of the keys just written: undo a put that landed after a newer local delete."""
        results: dict[str, Result] = {change.key_id: Outcome.APPLIED for change, _ in written}
        if not written:
            return results
        side = self.store.side.table
        try:
            found = self.store.read({side: [self.store.side.keys_of(c.key_id)[0] for c, _ in written]})
        except Exception as exc:  # noqa: BLE001 - the change is retried (a duplicate then, and checked again)
            error = classify(exc)
            return dict.fromkeys(results, error)
        for change, item in written:
            local = LocalRecord.of(found.get((side, item_key(self.store.side.keys_of(change.key_id)[0], ["pk"]))))
            tomb = local.tombstone
            assert change.version is not None
            if tomb is not None and tomb > change.version:
                results[change.key_id] = self._undo(change, item, tomb)
        return results

    def _undo(self, change: Change, item: Image, tomb: Version) -> Result:
        """Remove exactly the item this invocation wrote, which a newer local delete had removed before."""
        assert change.version is not None
        peer_key = self.store.side.keys_of(change.key_id)[1]
        try:
            found = self.store.read({self.store.side.table: [peer_key]})
        except Exception as exc:  # noqa: BLE001 - classified
            return classify(exc)
        peer = PeerRecord.of(found.get((self.store.side.table, item_key(peer_key, ["pk"]))))
        record = peer.deleting(tomb, self.stamps.visible(item, LocalRecord()))
        errors = self.store.write(
            [
                Write(
                    self.store.side.table,
                    {"PutRequest": {"Item": record.item(change.key_id, self.store.side.ttl_seconds)}},
                    change.key_id,
                )
            ]
        )
        if errors:
            return next(iter(errors.values()))
        outcome = self.store.conditional(
            "DeleteItem", TableName=self.store.table, Key=change.key, **self._guard(item, change.key)
        )
        if isinstance(outcome, (PermanentError, RetryableError)):
            return outcome
        return Outcome.STALE

    # -- deletes ----------------------------------------------------------------------------------------
    def _delete(self, deletes: list[tuple[Change, _Read]], results: dict[str, Result]) -> list[Change]:
        """Record each delete's `P#`, then remove the item guarded by what was read; the changes to decide again."""
        if not deletes:
            return []
        records: dict[str, PeerRecord] = {}
        writes: list[Write] = []
        for change, read in deletes:
            assert change.version is not None
            visible = self.stamps.visible(read.item, read.local) if read.item is not None else None
            record = read.peer.deleting(change.version, visible)
            if read.item is not None and visible is None:
                record = record.removing_content(digest(read.item))  # the REMOVE is named by what it removed
            records[change.key_id] = record
            if record != read.peer:
                item = record.item(change.key_id, self.store.side.ttl_seconds)
                writes.append(Write(self.store.side.table, {"PutRequest": {"Item": item}}, change.key_id))
        errors = self.store.write(writes)
        jobs: list[tuple[Change, _Read, Callable[[], Any]]] = []
        for change, read in deletes:
            if change.key_id in errors:
                results[change.key_id] = errors[change.key_id]  # never delete what is not remembered
                continue
            if read.item is None:
                results[change.key_id] = Outcome.APPLIED
                continue
            jobs.append((change, read, self._deleter(change.key, self._guard(read.item, change.key))))
        again: list[Change] = []
        outcomes = self.store.run([job for _, _, job in jobs])
        markers: list[Write] = []
        for (change, read, _), outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, (PermanentError, RetryableError)):
                results[change.key_id] = outcome
            elif outcome is False:
                again.append(change)  # the item changed since it was read: read and decide again
            else:
                results[change.key_id] = Outcome.APPLIED
                removed = outcome if isinstance(outcome, dict) else None
                if removed is not None and read.item is not None and digest(removed) != digest(read.item):
                    # A local write landed between the read and the delete (an UpdateItem keeps every
                    # attribute the guard looks at): name what was removed, so the relay judges it.
                    record = records[change.key_id].removing_content(digest(removed))
                    item = record.item(change.key_id, self.store.side.ttl_seconds)
                    markers.append(Write(self.store.side.table, {"PutRequest": {"Item": item}}, change.key_id))
        for owner, error in self.store.write(markers).items():
            results[str(owner)] = error
        return again

    def _deleter(self, key: Image, guard: dict[str, Any]) -> Callable[[], Any]:
        return lambda: self.store.conditional("DeleteItem", TableName=self.store.table, Key=key, **guard)

    def _guard(self, item: Image | None, key: Image) -> dict[str, Any]:
        """A condition: the item still holds the stamps and the bridge attribute it was read (or written) with."""
        names = {"#k": next(iter(key))}
        values: dict[str, Any] = {}
        parts = ["attribute_exists(#k)"]
        watched = [self.stamps.bridge_attr]
        if not self.stamps.bridge_owned:
            watched += [self.stamps.attrs.ts, self.stamps.attrs.origin]
        for i, name in enumerate(watched):
            names[f"#w{i}"] = name
            if item is not None and name in item:
                parts.append(f"#w{i} = :w{i}")
                values[f":w{i}"] = item[name]
            else:
                parts.append(f"attribute_not_exists(#w{i})")
        out: dict[str, Any] = {"ConditionExpression": " AND ".join(parts), "ExpressionAttributeNames": names}
        if values:
            out["ExpressionAttributeValues"] = values
        return out
