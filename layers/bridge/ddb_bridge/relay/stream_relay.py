"""stream_relay's domain: this region's stream batch -> packs on the peer region's Kinesis stream.

Per key, the batch is judged against what this region already knew (docs/design.md#versions-and-last-writer-wins):
- An INSERT/MODIFY stamped by another origin was written by replication: dropped here, before the
  border (the template's FilterCriteria drops most of them before Lambda is even invoked).
- A REMOVE is an echo iff replication left a marker for the exact version it removed (`echoes`):
  dropped. Any other REMOVE is a local delete and replicates, even of an item the peer wrote last;
  the relay also records its tombstone here, so a late older put from the peer cannot resurrect it.
- A TTL delete (`userIdentity.type == "Service"`) follows REPLICATE_TTL_DELETES.
- Of the remaining local changes of a key, only the newest version crosses (fewer bytes; appliers
  decide by version anyway). A local put older than a version this region already held (a writer
  whose clock is behind, or one that does not stamp over a stamped item) lost last-writer-wins: it
  is not sent, and the newer state is put back locally, so both regions converge.
Unstamped puts with no stamped history cross as they are (older than any version at the peer).
Every record is checked as DynamoDB would check it before anything crosses the border (a malformed one
is parked whole), and a change stamped further ahead of this region's clock than MAX_CLOCK_SKEW_SECONDS
is parked rather than sent: it would win last-writer-wins at the peer until its time came.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
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
from ..core.versions import Version, micros_of_ms, rank, recorded_version, version_of
from ..table.tombstones import TOMBSTONE_ATTRS, Tombstones
from .echoes import identity, marker_key
from .local import LocalTable
from .packs import OutRecord, WireChange, build_records
from .peer import PeerStream
from .settings import RelaySettings, load_relay_settings
from .writer import MarkedWriter

BATCH_GET_MAX = 100


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
    lags_ms: list[int] = field(default_factory=list)


report_listeners: list[Callable[[RelayReport], None]] = []


@dataclass(frozen=True)
class _State:
    """A version of an item this region held: a put (with its Lambda-JSON image) or a delete."""

    version: Version | None
    image: Image | None  # None for a delete
    change: Change | None = None  # set when it is a local change that may cross

    @property
    def order(self) -> tuple[tuple[int, int, str], bool]:
        """Last-writer-wins order; a delete wins an exact tie."""
        return rank(self.version), self.image is None


@dataclass
class _Key:
    """Everything the batch says about one item."""

    records: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[_State] = field(default_factory=list)  # local changes that may cross
    known: list[_State] = field(default_factory=list)  # versions this region held otherwise
    deferred: list[tuple[_State, str]] = field(default_factory=list)  # wait for an echo-marker lookup
    final: _State | None = None  # the item after the key's last record (a put), else None
    inserted: bool = False  # some record created the item (INSERT): check the tombstone


def relay_batch(
    records: list[dict[str, Any]],
    *,
    settings: RelaySettings,
    peer: PeerStream,
    writer: MarkedWriter,
    parking: ParkingLot,
) -> tuple[set[int], RelayReport]:
    """Relay a batch; returns the ids of the records to report as failed, and the batch report."""
    report = RelayReport(records=len(records))
    keys: dict[str, _Key] = {}
    failed_records: set[int] = set()
    horizon_us = int((time.time() + settings.max_clock_skew_seconds) * 1_000_000)
    for record in records:
        try:
            change = _within_horizon(
                from_stream_record(record, settings.versions, origin=settings.region_tag), settings, horizon_us, report
            )
        except PermanentError as error:
            report.parked += park_or_fail(parking, record, error, failed_records)
            continue
        view = keys.setdefault(change.key_id, _Key())
        view.records.append(record)
        _classify(change, record, view, settings, report, horizon_us)

    try:
        found = _lookups(writer, keys)
    except Exception as exc:  # noqa: BLE001 - the whole batch is retried
        cause = classify(exc)
        report.non_retryable += isinstance(cause, RetryableError) and cause.needs_operator
        logger.warning("tombstone lookups failed, batch will be retried", extra={"error": describe(exc)})
        failed_records.update(id(r) for view in keys.values() for r in view.records)
        report.failed = len(failed_records)
        return failed_records, report

    sends: list[tuple[str, Change]] = []
    actions = _Local()
    for kid, view in keys.items():
        for state, ident in view.deferred:
            if marker_key(kid, ident)["pk"]["S"] in found:
                report.echoes_dropped += 1  # written or removed by replication
            else:
                view.candidates.append(state)
        tomb = recorded_version(found.get(Tombstones.key_of(kid)["pk"]["S"]), TOMBSTONE_ATTRS)
        if tomb is not None:
            view.known.append(_State(tomb, None))
        _decide(kid, view, writer, report, sends, actions, settings.log_keys)

    failed_keys: set[str] = set()
    _forward(sends, settings, peer, parking, report, failed_keys, failed_records)
    _run_local(actions, writer, parking, report, failed_keys, failed_records)
    for kid in failed_keys:
        failed_records.update(id(r) for r in keys[kid].records)
    report.failed = len(failed_records)
    return failed_records, report


def _within_horizon(change: Change, settings: RelaySettings, horizon_us: int, report: RelayReport) -> Change:
    """A local change as it may cross: one stamped beyond MAX_CLOCK_SKEW_SECONDS is refused (parked).

    A delete of such an item is not: it takes its own time as its version, since the far-future item it
    removed was never sent (the peer holds at most an older version, which the delete must remove).
    """
    version = change.version
    if version is None or version.ts <= horizon_us or version.origin != settings.region_tag:
        return change
    if change.op is Op.DELETE:
        return dataclasses.replace(change, version=Version(micros_of_ms(change.approx_ms), settings.region_tag))
    report.future += 1
    raise PermanentError(
        "FutureVersion",
        f"a local change stamped more than MAX_CLOCK_SKEW_SECONDS={settings.max_clock_skew_seconds} ahead of "
        "this region's clock: it would win last-writer-wins at the peer until then (fix the writer's clock, "
        "then write the item again)",
    )


def _classify(
    change: Change, record: dict[str, Any], view: _Key, settings: RelaySettings, report: RelayReport, horizon_us: int
) -> None:
    """Sort one record into what the region knew and what may cross; track the item's final state.

    A state stamped beyond the clock-skew horizon (a far-future write that was parked) is not held as
    known: it must not be put back over the writes that replace it.
    """
    body = record["dynamodb"]
    old = body.get("OldImage")
    old_version = version_of(old, settings.versions)
    if old_version is not None and old_version.ts <= horizon_us:
        view.known.append(_State(old_version, old))
    if change.op is Op.DELETE:
        view.final = None
        if change.is_ttl and not settings.replicate_ttl_deletes:
            report.ttl_skipped += 1
            return
        state = _State(change.version, None, change)
        ident = identity(old_version, old)
        if ident is None:  # no OldImage (KEYS_ONLY stream): cannot be an echo we could recognise
            view.candidates.append(state)
        else:
            view.deferred.append((state, ident))
        return
    image = body["NewImage"]
    view.inserted = view.inserted or old is None
    if change.version is not None and change.version.origin != settings.region_tag:
        view.known.append(_State(change.version, image))  # replication's own write: never crosses back
        view.final = view.known[-1]
        report.echoes_dropped += 1
        return
    state = _State(change.version, image, change)
    view.final = state
    if change.version is None:  # unstamped: an applier's put leaves a marker of its content
        view.deferred.append((state, identity(None, image) or ""))
    else:
        view.candidates.append(state)


def _decide(
    kid: str,
    view: _Key,
    writer: MarkedWriter,
    report: RelayReport,
    sends: list[tuple[str, Change]],
    actions: _Local,
    log_keys: str = "plain",
) -> None:
    """Which change of the key crosses, and whether the table must be put back to a newer state.

    `newest` is the newest state the region has seen of the item. The newest local change crosses
    if nothing the region knew beats it (else the peer already has what beat it). If the item ended
    the batch older than `newest` (a local write that lost last-writer-wins), `newest` is put back.
    """
    if not view.candidates:
        return
    everything = view.candidates + view.known
    newest = max(everything, key=lambda s: s.order)
    top = max(reversed(view.candidates), key=lambda s: s.order)  # the latest of equals
    report.coalesced += len(view.candidates) - 1
    assert top.change is not None
    if top.order >= newest.order:
        sends.append((kid, top.change))
        if top.image is None:
            actions.remember.append(top.change)
            report.deletes_remembered += 1
            return  # remembering the delete also removes anything older that is left
    final = view.final
    if newest.image is None:
        stale = final is not None and final.order < newest.order
    else:
        stale = (final is None and any(c.image is None for c in view.candidates)) or (
            final is not None and final.order < newest.order
        )
    if not stale:
        return
    report.reverted += 1
    logger.warning(
        "a local write lost to a version this region already held: putting the newer state back",
        extra={"key": shown(kid, log_keys)},
    )
    base = top.change
    if newest.image is None:  # the newest thing held was a delete: remove what the local writes put back
        undo = Change(kid, base.key, Op.DELETE, None, newest.version, base.seq, base.approx_ms, False, base.record)
        actions.kill.append(undo)
    else:
        restore = Change(
            kid,
            base.key,
            Op.PUT,
            decode_image(newest.image),
            newest.version,
            base.seq,
            base.approx_ms,
            False,
            base.record,
        )
        actions.restore.append(restore)


def _lookups(writer: MarkedWriter, keys: dict[str, _Key]) -> dict[str, dict[str, Any]]:
    """Echo markers and tombstones the batch needs, read consistently in BatchGetItem calls."""
    assert writer.tombstones is not None
    wanted: dict[str, dict[str, Any]] = {}
    for kid, view in keys.items():
        for _, ident in view.deferred:
            key = marker_key(kid, ident)
            wanted[key["pk"]["S"]] = key
        if view.inserted:
            # An INSERT may have re-created an item over a newer delete. (A MODIFY cannot: its item
            # existed, and whatever re-created it came as an INSERT, judged against the tombstone.)
            key = Tombstones.key_of(kid)
            wanted[key["pk"]["S"]] = key
    table = writer.tombstones.table
    found: dict[str, dict[str, Any]] = {}
    pending = list(wanted.values())
    for start in range(0, len(pending), BATCH_GET_MAX):
        request: dict[str, Any] = {table: {"Keys": pending[start : start + BATCH_GET_MAX], "ConsistentRead": True}}
        for attempt in range(8):
            writer.requests += 1
            response = writer.client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table, []):
                found[item["pk"]["S"]] = item
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            writer.sleep(random.uniform(0, min(2.0, 0.05 * 2**attempt)))
        else:
            raise RetryableError("UnprocessedKeys", "tombstone lookups still unprocessed after retries")
    return found


def _forward(
    sends: list[tuple[str, Change]],
    settings: RelaySettings,
    peer: PeerStream,
    parking: ParkingLot,
    report: RelayReport,
    failed_keys: set[str],
    failed_records: set[int],
) -> None:
    if not sends:
        return
    by_key = dict(sends)
    wire = [
        WireChange(
            kid,
            change.record["dynamodb"]["Keys"],
            "D" if change.op is Op.DELETE else "P",
            change.record["dynamodb"]["NewImage"] if change.op is Op.PUT else None,
            change.version,
            change.approx_ms,
        )
        for kid, change in sends
    ]
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
        report.lags_ms.extend(max(0, now_ms - by_key[k].approx_ms) for k in out[index].key_ids)
    for index, error in result.failed.items():
        failed_keys.update(out[index].key_ids)
        report.non_retryable += error.needs_operator
        logger.warning("PutRecords failed, records will be retried", extra={"reason": error.reason})
    for index, permanent in result.rejected.items():
        for kid in out[index].key_ids:
            report.parked += park_or_fail(parking, by_key[kid].record, permanent, failed_records)


@dataclass
class _Local:
    """Writes the relay makes to its own region: tombstones of local deletes, and repairs."""

    remember: list[Change] = field(default_factory=list)  # local deletes: tombstone, then kill older leftovers
    kill: list[Change] = field(default_factory=list)  # remove what lost to a newer delete
    restore: list[Change] = field(default_factory=list)  # put back what lost to a newer put


def _run_local(
    actions: _Local,
    writer: MarkedWriter,
    parking: ParkingLot,
    report: RelayReport,
    failed_keys: set[str],
    failed_records: set[int],
) -> None:
    """The region's own writes, grouped into few transactions per kind."""
    results: dict[str, Any] = {}
    if actions.remember:
        results.update(writer.remember_deletes(actions.remember))
    if actions.kill:
        results.update(writer.kill_older_many(actions.kill))
    if actions.restore:
        results.update(writer.apply(actions.restore))
    records = {c.key_id: c.record for c in actions.remember + actions.kill + actions.restore}
    for kid, result in results.items():
        if isinstance(result, RetryableError):
            failed_keys.add(kid)
            report.non_retryable += result.needs_operator
            logger.warning("local write failed, will retry", extra={"reason": result.reason})
        elif isinstance(result, PermanentError):
            report.parked += park_or_fail(parking, records[kid], result, failed_records)


def _emit(report: RelayReport) -> None:
    counts = {
        "ChangesForwarded": report.forwarded,
        "EchoesDropped": report.echoes_dropped,
        "TtlDeletesSkipped": report.ttl_skipped,
        "ChangesCoalesced": report.coalesced,
        "LocalWritesReverted": report.reverted,
        "RecordsParked": report.parked,
        "RecordsRetried": report.failed,
        "NonRetryableFailures": report.non_retryable,
        "ChangesFromTheFuture": report.future,
        "KinesisRecordsPut": report.kinesis_records,
        "PutRecordsCalls": report.put_calls,
        "PutRecordsRetriedRecords": report.put_retries,
        "PeerCredentialRefreshes": report.credential_refreshes,
    }
    publish(counts, lags_ms=report.lags_ms, lag_metric="RelayLag")
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
        records, settings=rt.settings, peer=rt.peer, writer=rt.local.writer(), parking=rt.parking
    )
    response = settle(event, failed, EventType.DynamoDBStreams, context)
    _emit(report)
    logger.info("batch relayed", extra={k: v for k, v in vars(report).items() if k != "lags_ms"})
    return dict(response)
