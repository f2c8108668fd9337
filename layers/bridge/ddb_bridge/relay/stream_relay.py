"""stream_relay's domain: this region's stream batch -> versioned packs on the peer region's Kinesis stream.

Each key's records are walked in stream order, tracking the newest state the region held (its `L#` and
`P#` side records, every OldImage, replication's own writes, local changes) and the item's state after
the last record:

- An INSERT/MODIFY whose NewImage carries a verified bridge attribute its OldImage did not was written by
  replication (or by this relay's repair): dropped here, before the border. With application stamps, a
  put stamped by another origin whose stamp changed is replication's too.
- A REMOVE is replication's own iff the version it removed is the one the applier (`P#` x) or this relay
  (`L#` x) recorded as removing: dropped. Any other REMOVE is a local delete and replicates.
- A TTL delete (`userIdentity.type == "Service"`) follows REPLICATE_TTL_DELETES.
- Every other record is a local change and gets its version: the application's stamp (application
  stamps, when the write changed it), else the bridge's (`core.versions.bridge_version`: the stream's
  second, the sequence number, the causal rule over the newest version recorded).

Only the key's newest local change crosses, and only if nothing the region held beats it (else the peer
already has what beat it). Its version is recorded in `L#` before it crosses (bridge-owned stamps, local
deletes: the tombstone, writes without a stamp), so a retried batch versions it the same way. If the
item did not end at the newest state the region held (a local write that lost, replication's put landing
on a newer local write, a delete that removed a newer state), that state is put back, guarded by the
item still being what the batch left. After a local delete crosses, the item is read again: anything
older that replication put back meanwhile is removed (the kill pass).
Every record is checked as DynamoDB would check it before anything crosses the border (a malformed one
is parked whole), and a change stamped further ahead of this region's clock than MAX_CLOCK_SKEW_SECONDS
is parked rather than sent: it would win last-writer-wins at the peer until its time came.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any

from aws_lambda_powertools.utilities.batch import EventType

from ..core.access import PeerKeys
from ..core.batch import park_or_fail, publish, settle
from ..core.changes import Change, Op, from_stream_record
from ..core.clients import client_config
from ..core.codec import Image, decode_image
from ..core.errors import PermanentError, RetryableError, classify, describe
from ..core.keys import shown
from ..core.observability import MetricUnit, logger, metrics
from ..core.parking import ParkingLot
from ..core.versions import Version, bridge_version, micros_of_ms, sequence_number
from .local import LocalTable, Store, Write, item_key
from .packs import OutRecord, WireChange, build_records
from .peer import PeerStream
from .settings import RelaySettings, load_relay_settings
from .sidetable import LocalRecord, PeerRecord
from .states import Versions, digest


@dataclass
class RelayReport:
    """What one batch did; logged, sent as metrics, and handed to listeners (harness, demo, bench)."""

    records: int = 0
    forwarded: int = 0
    echoes_dropped: int = 0
    ttl_skipped: int = 0
    coalesced: int = 0
    reverted: int = 0
    deletes_remembered: int = 0
    versions_recorded: int = 0
    killed: int = 0
    parked: int = 0
    future: int = 0
    failed: int = 0
    non_retryable: int = 0
    kinesis_records: int = 0
    put_calls: int = 0
    bytes_sent: int = 0
    raw_bytes: int = 0
    put_retries: int = 0
    credential_refreshes: int = 0
    requests: int = 0
    lags_ms: list[int] = field(default_factory=list)
    versions: list[tuple[str, int, Version, bool]] = field(default_factory=list)  # sent: (key, seq, version, deleted)


report_listeners: list[Callable[[RelayReport], None]] = []


@dataclass(frozen=True)
class _State:
    """A state of an item the region held: a put (with its Lambda-JSON image, when known) or a delete."""

    version: Version | None
    image: Image | None = None
    deleted: bool = False
    change: Change | None = None  # set when it is a local change that may cross

    def beats(self, other: _State | None) -> bool:
        """Strictly newer than `other` (an unversioned state is older than any version)."""
        if other is None or other.version is None:
            return self.version is not None
        return self.version is not None and self.version > other.version


@dataclass
class _Plan:
    """What the batch must do for one key."""

    key: Image = field(default_factory=dict)  # the item key (client form)
    local: LocalRecord = field(default_factory=LocalRecord)  # the key's L# record as the walk left it
    send: _State | None = None
    record: LocalRecord | None = None  # the L# record to write before anything crosses
    repair: tuple[_State, _State | None] | None = None  # (the state to put back, the item's state the batch left)
    kill_after: Version | None = None  # a local delete that crosses: remove anything older found afterwards
    coalesced: int = 0


def relay_batch(
    records: list[dict[str, Any]],
    *,
    settings: RelaySettings,
    peer: PeerStream,
    store: Store,
    parking: ParkingLot,
) -> tuple[set[int], RelayReport]:
    """Relay a batch; returns the ids of the records to report as failed, and the batch report."""
    report = RelayReport(records=len(records))
    keys: dict[str, list[Change]] = {}
    failed_records: set[int] = set()
    horizon_us = int((time.time() + settings.max_clock_skew_seconds) * 1_000_000)
    for record in records:
        try:
            change = from_stream_record(record, settings.versions, origin=settings.region_tag)
            sequence_number(change.seq)
            _within_horizon(change, settings, horizon_us, report)
        except (PermanentError, ValueError) as exc:
            permanent = exc if isinstance(exc, PermanentError) else PermanentError("MalformedRecord", str(exc))
            report.parked += park_or_fail(parking, record, permanent, failed_records)
            continue
        chain = keys.setdefault(change.key_id, [])
        if any(c.seq == change.seq for c in chain):
            continue  # the same record twice in one batch (a redelivery): one change
        chain.append(change)

    walker = _Walker(settings, horizon_us, report)
    wanted = [kid for kid, changes in keys.items() if walker.needs_records(changes)]
    try:
        side = _read_records(store, wanted)
    except Exception as exc:  # noqa: BLE001 - the whole batch is retried
        cause = classify(exc)
        report.non_retryable += isinstance(cause, RetryableError) and cause.needs_operator
        logger.warning("side-table reads failed, batch will be retried", extra={"error": describe(exc)})
        failed_records.update(id(c.record) for changes in keys.values() for c in changes)
        report.failed = len(failed_records)
        report.requests = store.requests
        return failed_records, report

    plans = {
        kid: walker.walk(kid, changes, *side.get(kid, (LocalRecord(), PeerRecord()))) for kid, changes in keys.items()
    }
    failed_keys: dict[str, PermanentError | RetryableError] = {}
    _write_records(store, plans, side, report, failed_keys)
    _forward(plans, keys, settings, peer, parking, report, failed_keys, failed_records)
    local = _LocalWrites(store, settings.stamps, report)
    local.repair(plans, side, failed_keys)
    local.kill_pass(plans, side, failed_keys)
    for kid, error in failed_keys.items():
        if isinstance(error, PermanentError):
            for change in keys[kid]:
                report.parked += park_or_fail(parking, change.record, error, failed_records)
            continue
        report.non_retryable += error.needs_operator
        failed_records.update(id(c.record) for c in keys[kid])
    report.failed = len(failed_records)
    report.requests = store.requests
    return failed_records, report


def _within_horizon(change: Change, settings: RelaySettings, horizon_us: int, report: RelayReport) -> None:
    """Refuse (park) a local put stamped beyond MAX_CLOCK_SKEW_SECONDS (application stamps only).

    A delete of such an item is not refused: it takes its own time as its version (see `_Walker`).
    """
    version = change.version
    if settings.stamps.bridge_owned or change.op is Op.DELETE:
        return
    if version is None or version.ts <= horizon_us or version.origin != settings.region_tag:
        return
    report.future += 1
    raise PermanentError(
        "FutureVersion",
        f"a local change stamped more than MAX_CLOCK_SKEW_SECONDS={settings.max_clock_skew_seconds} ahead of "
        "this region's clock: it would win last-writer-wins at the peer until then (fix the writer's clock, "
        "then write the item again)",
    )


class _Walker:
    """Walks one key's records in stream order (module docstring): versions, what crosses, what to repair."""

    def __init__(self, settings: RelaySettings, horizon_us: int, report: RelayReport) -> None:
        self.settings = settings
        self.stamps: Versions = settings.stamps
        self.region = settings.region_tag
        self.horizon_us = horizon_us
        self.report = report
        self.consumed: set[str] = set()  # keys whose `L#` must record consumed tokens

    def needs_records(self, changes: list[Change]) -> bool:
        """Whether the key's side records matter to the walk (else the reads are skipped)."""
        if self.stamps.bridge_owned:
            return True
        for change in changes:
            body = change.record["dynamodb"]
            new, old = body.get("NewImage"), body.get("OldImage")
            if change.op is Op.DELETE or old is None:
                return True  # a REMOVE (echo or tombstone) or an INSERT (a re-creation over a delete?)
            if self.stamps.stamp(new) is None or self.stamps.stamp(old) is None:
                return True  # a state without a stamp: only the side records version it
            if self.stamps.bridge_attr in new or self.stamps.bridge_attr in old:
                return True
        return False

    def walk(self, kid: str, changes: list[Change], local: LocalRecord, peer: PeerRecord) -> _Plan:
        """The plan of one key."""
        first_seq = sequence_number(changes[0].seq)
        stale_record = local.version is not None and local.version.seq >= first_seq  # written by an earlier try
        latest = local
        newest: _State | None = None
        tomb = max((v for v in (local.tombstone, peer.version) if v is not None), default=None)
        if tomb is not None:
            newest = _State(tomb, None, True)
        if local.version is not None and not stale_record:
            newest = _max(newest, _State(local.version, None, local.deleted))
        final: _State | None = None
        candidates: list[_State] = []
        ttl_gone = False
        consumed = local.consumed
        for change in changes:
            body = change.record["dynamodb"]
            new, old = body.get("NewImage"), body.get("OldImage")
            seq = sequence_number(change.seq)
            held = self._held(old, latest)
            if held is not None:
                newest = _max(newest, held)
            ttl_gone = False
            if change.op is Op.PUT and old is not None and digest(new) == digest(old):
                final = _State(held.version if held is not None else None, new)
                continue  # nothing changed (DynamoDB writes no record for that; an emulator may)
            if change.op is Op.PUT:
                written = self._written_by_bridge(new, old)
                if written is not None:
                    final = _State(written, new)
                    newest = _max(newest, final)
                    self.report.echoes_dropped += written.origin != self.region
                    continue
                version = self._local_version(change, new, old, seq, newest, local)
                final = _State(version, new, False, change)
                candidates.append(final)
                newest = _max(newest, final)
                latest = LocalRecord(version, False, self.stamps.content_digest(new), latest.removed)
                continue
            removed = held.version if held is not None else None
            echo, token = self._is_echo(old, removed, local, peer, consumed, seq) if old is not None else (False, None)
            if token is not None and f"{token}>{seq}" not in consumed:
                consumed = (*consumed, f"{token}>{seq}")  # which REMOVE took it: a retried batch takes it again
            if echo:
                self.report.echoes_dropped += 1
                final = None
                why = max((v for v in (peer.version, local.tombstone) if v is not None), default=None)
                if why is not None:
                    newest = _max(newest, _State(why, None, True))
                continue
            final = None
            if change.is_ttl and not self.settings.replicate_ttl_deletes:
                self.report.ttl_skipped += 1
                ttl_gone = True  # gone here for good, and the peer's own TTL removes its copy: never put back
                continue
            version = self._delete_version(change, held, seq, newest, local)
            state = _State(version, None, True, change)
            candidates.append(state)
            newest = _max(newest, state)
            latest = LocalRecord(version, True, None, latest.removed)
        if consumed != local.consumed:
            local = dataclasses.replace(local, consumed=consumed)
            self.consumed.add(kid)
        return self._plan(kid, dict(changes[0].key), candidates, newest, final, ttl_gone, local)

    # -- the pieces of the walk ---------------------------------------------------------------------
    def _held(self, old: Image | None, latest: LocalRecord) -> _State | None:
        """The state an OldImage shows, as the region knew it (None when it cannot be told, or is far-future)."""
        if old is None:
            return None
        version = self.stamps.visible(old, latest)
        if version is None or (version.rank == 1 and not self.stamps.bridge_owned and version.ts > self.horizon_us):
            return None  # a parked far-future write is never put back over the writes that replace it
        return _State(version, old)

    def _written_by_bridge(self, new: Image, old: Image | None) -> Version | None:
        """The version of a NewImage replication (or a relay repair) wrote; None for a local write."""
        marked = self.stamps.written_by_bridge(new, old)
        if marked is not None:
            return marked
        stamp = self.stamps.stamp(new)
        if stamp is None or stamp.origin == self.region:
            return None
        if old is not None and self.stamps.stamp(old) == stamp:
            return None  # an update that left another region's stamp alone: a local write without a stamp
        return stamp  # stamped by another origin: replication's own (application stamps)

    def _local_version(
        self, change: Change, new: Image, old: Image | None, seq: int, newest: _State | None, local: LocalRecord
    ) -> Version:
        """A local write's version: the stamp it wrote, else the bridge's."""
        stamp = self.stamps.stamp(new)
        if stamp is not None and (old is None or self.stamps.stamp(old) != stamp):
            return stamp
        if local.version is not None and local.version.seq == seq and local.version.origin == self.region:
            return local.version  # a retried batch: the version this change was given and recorded before
        rank = 1 if self.stamps.bridge_owned else 0
        return bridge_version(_second_us(change.approx_ms), seq, self.region, _version(newest), rank=rank)

    def _delete_version(
        self, change: Change, held: _State | None, seq: int, newest: _State | None, local: LocalRecord
    ) -> Version:
        """A local delete's version: the bridge's, or with application stamps the classic one.

        With application stamps: newer than what it removed and no older than the delete itself (its own
        time alone when it removed a far-future stamp).
        """
        if local.version is not None and local.version.seq == seq and local.version.origin == self.region:
            return local.version
        if not self.stamps.bridge_owned:
            when = micros_of_ms(change.approx_ms)
            removed = held.version if held is not None else None
            floor = removed.ts + 1 if removed is not None and removed.rank == 1 else 0
            return Version(max(when, floor), self.region, seq, 1)
        return bridge_version(_second_us(change.approx_ms), seq, self.region, _version(newest))

    def _is_echo(
        self,
        old: Image,
        removed: Version | None,
        local: LocalRecord,
        peer: PeerRecord,
        consumed: tuple[str, ...],
        seq: int,
    ) -> tuple[bool, str | None]:
        """A REMOVE made by replication, and the `P#` token it consumes, if any.

        The applier (`P#` x) or this relay's repair (`L#` x) removed exactly that version; or the applier
        removed a state of exactly that content without knowing its version (the oldest token not consumed).
        """
        if removed is not None and (removed in peer.removed or removed in local.removed):
            return True, None
        if not peer.tokens:
            return False, None
        content = digest(old)
        taken = {entry.rpartition(">")[0]: entry.rpartition(">")[2] for entry in consumed}
        for token in peer.tokens:
            if token.rpartition("@")[0] == content and taken.get(token, str(seq)) == str(seq):
                return True, token  # not taken yet, or taken by this very REMOVE (a retried batch)
        return False, None

    def _plan(
        self,
        kid: str,
        key: Image,
        candidates: list[_State],
        newest: _State | None,
        final: _State | None,
        ttl_gone: bool,
        local: LocalRecord,
    ) -> _Plan:
        plan = _Plan(key=key, local=local, coalesced=max(0, len(candidates) - 1))
        self.report.coalesced += plan.coalesced
        top = None
        for state in candidates:
            if top is None or not top.beats(state):  # the latest of equals
                top = state
        if top is not None and not _older(top, newest):
            plan.send = top
            record_it = self.stamps.bridge_owned or top.deleted or (top.version is not None and top.version.rank == 0)
            if record_it:
                digest_of = None if top.deleted or top.image is None else self.stamps.content_digest(top.image)
                plan.record = LocalRecord(top.version, top.deleted, digest_of, local.removed, local.consumed)
            if top.deleted:
                plan.kill_after = top.version
                self.report.deletes_remembered += 1
        if plan.record is None and kid in self.consumed:
            plan.record = local  # only the consumed tokens changed
        if ttl_gone or newest is None or newest.version is None:
            return plan
        if newest.deleted:
            if final is not None:
                plan.repair = (newest, final)
        elif newest.image is not None and not _same(final, newest):
            plan.repair = (newest, final)
        if plan.repair is not None:
            self.report.reverted += 1
            logger.warning(
                "the item did not end at the newest state this region held: putting the newer state back",
                extra={"key": shown(kid, self.settings.log_keys)},
            )
        return plan


def _max(a: _State | None, b: _State) -> _State:
    """The newer state; of one version, the one whose image is known (a side record only names its version)."""
    if a is None or b.beats(a):
        return b
    if b.version == a.version and a.image is None and not a.deleted and b.image is not None:
        return b
    return a


def _same(final: _State | None, newest: _State) -> bool:
    """Whether the item already is the newest state (by version, or the very same item under another name)."""
    if final is None:
        return False
    return final.version == newest.version or (
        final.image is not None and newest.image is not None and digest(final.image) == digest(newest.image)
    )


def _older(state: _State, newest: _State | None) -> bool:
    return newest is not None and newest.beats(state)


def _version(state: _State | None) -> Version | None:
    return state.version if state is not None else None


def _second_us(approx_ms: int) -> int:
    """A stream time in whole seconds (as DynamoDB Streams gives it), in microseconds."""
    return approx_ms // 1000 * 1_000_000


def _read_records(store: Store, kids: list[str]) -> dict[str, tuple[LocalRecord, PeerRecord]]:
    """The `L#` and `P#` records of these keys (consistent BatchGetItem)."""
    if not kids:
        return {}
    keys = {kid: store.side.keys_of(kid) for kid in kids}
    found = store.read({store.side.table: [k for pair in keys.values() for k in pair]})
    out: dict[str, tuple[LocalRecord, PeerRecord]] = {}
    for kid, (local_key, peer_key) in keys.items():
        local = found.get((store.side.table, _pk(local_key)))
        peer = found.get((store.side.table, _pk(peer_key)))
        out[kid] = (LocalRecord.of(local), PeerRecord.of(peer))
    return out


def _pk(key: dict[str, Any]) -> str:
    return item_key(key, ["pk"])


def _write_records(
    store: Store,
    plans: dict[str, _Plan],
    side: dict[str, tuple[LocalRecord, PeerRecord]],
    report: RelayReport,
    failed: dict[str, PermanentError | RetryableError],
) -> None:
    """Record the versions and tombstones of what is about to cross, and the repairs' echo markers."""
    writes: list[Write] = []
    for kid, plan in plans.items():
        record = plan.record
        if plan.repair is not None and plan.repair[0].deleted and plan.repair[1] is not None:
            removed = plan.repair[1].version  # the repair removes exactly this: its REMOVE is an echo
            base = record or plan.local
            record = base.removing(removed) if removed is not None else base
            plan.record = record
        if record is None:
            continue
        writes.append(Write(store.side.table, {"PutRequest": {"Item": record.item(kid, store.side.ttl_seconds)}}, kid))
        report.versions_recorded += 1
    for owner, error in store.write(writes).items():
        failed[str(owner)] = error
        logger.warning("side-table write failed, will retry", extra={"reason": error.reason})


def _forward(
    plans: dict[str, _Plan],
    keys: dict[str, list[Change]],
    settings: RelaySettings,
    peer: PeerStream,
    parking: ParkingLot,
    report: RelayReport,
    failed: dict[str, PermanentError | RetryableError],
    failed_records: set[int],
) -> None:
    sends = {kid: plan.send for kid, plan in plans.items() if plan.send is not None and kid not in failed}
    if not sends:
        return
    wire = []
    for kid, state in sends.items():
        assert state.change is not None and state.version is not None
        body = state.change.record["dynamodb"]
        image = None
        if not state.deleted:
            image = {k: v for k, v in body["NewImage"].items() if k != settings.stamps.bridge_attr}
        wire.append(
            WireChange(kid, body["Keys"], "D" if state.deleted else "P", image, state.version, state.change.approx_ms)
        )
    out: list[OutRecord] = build_records(
        settings.region_tag,
        wire,
        compress=settings.compress,
        pack_bytes=settings.pack_bytes,
        buckets=settings.pack_buckets,
    )
    result = peer.put(out, attempts=settings.put_attempts)
    now_ms = int(time.time() * 1000)
    report.kinesis_records += len(result.sent)
    report.put_calls += result.calls
    report.bytes_sent += result.bytes_sent
    report.put_retries += result.retried_records
    report.credential_refreshes += result.credential_refreshes
    for index in result.sent:
        report.raw_bytes += out[index].raw_bytes
        report.forwarded += len(out[index].key_ids)
        for kid in out[index].key_ids:
            state = sends[kid]
            assert state.change is not None and state.version is not None
            report.lags_ms.append(max(0, now_ms - state.change.approx_ms))
            report.versions.append((kid, sequence_number(state.change.seq), state.version, state.deleted))
    for index, error in result.failed.items():
        for kid in out[index].key_ids:
            failed[kid] = error
        logger.warning("PutRecords failed, records will be retried", extra={"reason": error.reason})
    for index, permanent in result.rejected.items():
        for kid in out[index].key_ids:
            plans[kid].kill_after = None
            plans[kid].repair = None
            for change in keys[kid]:
                report.parked += park_or_fail(parking, change.record, permanent, failed_records)


class _LocalWrites:
    """The relay's writes to its own table: repairs, and the kill pass after local deletes."""

    def __init__(self, store: Store, stamps: Versions, report: RelayReport) -> None:
        self.store = store
        self.stamps = stamps
        self.report = report

    def repair(
        self,
        plans: dict[str, _Plan],
        side: dict[str, tuple[LocalRecord, PeerRecord]],
        failed: dict[str, PermanentError | RetryableError],
    ) -> None:
        """Put back the newest state of every key whose item ended elsewhere (guarded by what the batch left)."""
        jobs: list[tuple[str, Callable[[], PermanentError | RetryableError | None]]] = []
        for kid, plan in plans.items():
            if plan.repair is None or kid in failed:
                continue
            jobs.append((kid, partial(self._put_back, kid, *plan.repair, plans)))
        for (kid, _), error in zip(jobs, self.store.run([job for _, job in jobs]), strict=True):
            if error is not None:
                failed[kid] = error

    def _put_back(
        self, kid: str, target: _State, final: _State | None, plans: dict[str, _Plan]
    ) -> PermanentError | RetryableError | None:
        """One repair, with bounded re-reads when the item changed since the batch's last record."""
        expected: Image | None = decode_image(final.image) if final is not None and final.image is not None else None
        assert target.version is not None
        key = plans[kid].key
        for _ in range(4):
            if target.deleted:
                if expected is None:
                    return None
                outcome = self.store.conditional(
                    "DeleteItem", TableName=self.store.table, Key=key, **self._guard(expected, key).kwargs()
                )
            else:
                assert target.image is not None
                # Marked with its version: how the relay recognises its own repair (an application stamp alone
                # cannot tell the state apart from a later write that left the stamp as it was).
                item = self.stamps.mark(decode_image(target.image), target.version)
                outcome = self.store.conditional(
                    "PutItem", TableName=self.store.table, Item=item, **self._guard(expected, key).kwargs()
                )
            if isinstance(outcome, (PermanentError, RetryableError)):
                return outcome
            if outcome is not False:
                return None
            # The item changed since the batch's last record: decide again on what is there now.
            current = self._read_item(key)
            if current is None and target.deleted:
                return None
            version = self.stamps.visible(current, LocalRecord()) if current is not None else None
            if current is not None and (version is None or version >= target.version):
                return None  # a local write not versioned yet (its own record will be judged), or newer
            if target.deleted:
                return RetryableError("RepairRace", "the item changed under the repair; the batch is retried")
            expected = current
        return RetryableError("RepairRace", "the item kept changing under the repair")

    def _guard(self, expected: Image | None, key: Image) -> _Condition:
        return _Condition.exactly(expected, self.stamps, next(iter(key)))

    def _read_item(self, key: Image) -> Image | None:
        found = self.store.read({self.store.table: [key]})
        return found.get((self.store.table, item_key(key, list(key))))

    def kill_pass(
        self,
        plans: dict[str, _Plan],
        side: dict[str, tuple[LocalRecord, PeerRecord]],
        failed: dict[str, PermanentError | RetryableError],
    ) -> None:
        """After local deletes crossed: remove whatever older state replication put back in the meantime."""
        todo = {kid: plan for kid, plan in plans.items() if plan.kill_after is not None and kid not in failed}
        if not todo:
            return
        keys = {kid: plan.key for kid, plan in todo.items()}
        try:
            found = self.store.read({self.store.table: list(keys.values())})
        except Exception as exc:  # noqa: BLE001 - classified
            error = classify(exc)
            for kid in todo:
                failed[kid] = error
            return
        kills: list[tuple[str, Image, Version]] = []
        for kid, plan in todo.items():
            current = found.get((self.store.table, item_key(keys[kid], list(keys[kid]))))
            if current is None:
                continue
            version = self.stamps.visible(current, plan.record or LocalRecord())
            assert plan.kill_after is not None
            if version is not None and version < plan.kill_after:
                kills.append((kid, current, version))
        if not kills:
            return
        records = []
        for kid, _, version in kills:
            base = plans[kid].record or plans[kid].local
            records.append(
                Write(
                    self.store.side.table,
                    {"PutRequest": {"Item": base.removing(version).item(kid, self.store.side.ttl_seconds)}},
                    kid,
                )
            )
        errors = self.store.write(records)
        jobs = []
        for kid, current, _ in kills:
            if kid in errors:
                failed[kid] = errors[kid]
                continue
            jobs.append(
                (
                    kid,
                    lambda kid=kid, current=current: self.store.conditional(
                        "DeleteItem",
                        TableName=self.store.table,
                        Key=keys[kid],
                        **self._guard(current, keys[kid]).kwargs(),
                    ),
                )
            )
        for (kid, _), outcome in zip(jobs, self.store.run([job for _, job in jobs]), strict=True):
            if isinstance(outcome, (PermanentError, RetryableError)):
                failed[kid] = outcome
            elif outcome is not False:
                self.report.killed += 1


@dataclass(frozen=True)
class _Condition:
    """A guard: the item is still exactly what the relay expects (its stamps and the bridge's attribute)."""

    expression: str
    names: dict[str, str]
    values: dict[str, Any]

    @classmethod
    def exactly(cls, expected: Image | None, stamps: Versions, key_name: str) -> _Condition:
        """Absent when `expected` is None; else present with the same stamps and bridge attribute."""
        if expected is None:
            return cls("attribute_not_exists(#k)", {"#k": key_name}, {})
        names: dict[str, str] = {"#k": key_name}
        values: dict[str, Any] = {}
        parts: list[str] = ["attribute_exists(#k)"]
        watched = [stamps.bridge_attr]
        if not stamps.bridge_owned:
            watched += [stamps.attrs.ts, stamps.attrs.origin]
        for i, name in enumerate(watched):
            names[f"#w{i}"] = name
            if name in expected:
                parts.append(f"#w{i} = :w{i}")
                values[f":w{i}"] = expected[name]
            else:
                parts.append(f"attribute_not_exists(#w{i})")
        return cls(" AND ".join(parts), names, values)

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ConditionExpression": self.expression, "ExpressionAttributeNames": self.names}
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out


def _emit(report: RelayReport) -> None:
    counts = {
        "ChangesForwarded": report.forwarded,
        "EchoesDropped": report.echoes_dropped,
        "TtlDeletesSkipped": report.ttl_skipped,
        "ChangesCoalesced": report.coalesced,
        "LocalWritesReverted": report.reverted,
        "VersionsRecorded": report.versions_recorded,
        "RecordsParked": report.parked,
        "RecordsRetried": report.failed,
        "NonRetryableFailures": report.non_retryable,
        "ChangesFromTheFuture": report.future,
        "KinesisRecordsPut": report.kinesis_records,
        "PutRecordsCalls": report.put_calls,
        "PutRecordsRetriedRecords": report.put_retries,
        "PeerCredentialRefreshes": report.credential_refreshes,
    }
    publish(counts, lags_ms=report.lags_ms)
    metrics.add_metric(name="BytesToPeer", unit=MetricUnit.Bytes, value=report.bytes_sent)
    for listener in report_listeners:
        listener(report)


@dataclass
class Runtime:
    """What a warm relay keeps between invocations."""

    settings: RelaySettings
    parking: ParkingLot
    peer: PeerStream
    local: LocalTable


@cache
def runtime() -> Runtime:
    """Settings and clients, built once per cold start; a bad setting fails here with its name."""
    settings = load_relay_settings()
    keys = PeerKeys(settings.peer_keys) if settings.peer_keys else None
    peer = PeerStream(
        region=settings.peer_region,
        stream=settings.peer_stream,
        keys=keys,
        config=client_config(
            max_attempts=settings.peer_max_attempts, https_proxy=settings.https_proxy, read_timeout=20.0
        ),
    )
    return Runtime(
        settings,
        ParkingLot(settings.parking_queue_url, source="stream_relay", region=settings.aws_region),
        peer,
        LocalTable.of(settings),
    )


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The whole Lambda invocation: relay, settle each record through BatchProcessor, report."""
    rt = runtime()
    records = event.get("Records") or []
    if not records:
        return {"batchItemFailures": []}
    failed, report = relay_batch(
        records, settings=rt.settings, peer=rt.peer, store=rt.local.store(), parking=rt.parking
    )
    response = settle(event, failed, EventType.DynamoDBStreams, context)
    _emit(report)
    logger.info("batch relayed", extra={k: v for k, v in vars(report).items() if k not in ("lags_ms", "versions")})
    return dict(response)
