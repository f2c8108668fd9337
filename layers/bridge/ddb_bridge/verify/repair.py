"""Repair: make the target hold the source's current state for every real difference, never a newer write lost.

For each real difference (missing, extra, different) the repair reads both sides again, consistently,
immediately before it writes, and then:

- both sides equal now: nothing to do (`equal` in the report);
- the target is not what the recheck compared (another write reached it since): left alone, replication
  or the next verify owns it (`targetChanged`);
- otherwise it writes the source's current state to the target (or deletes the target's item when the
  source has none) through `TableWriter.apply_guarded`: the write is conditional on the target still
  being exactly what was just read, and in `lww`/`bidirectional` mode a put is made only if the source's
  version wins over that state (`wins`). A write made meanwhile fails the condition and survives.

Every key written is read again on both sides: `repaired` only if they are equal now.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..core.canonical import digest, same_item
from ..core.capacity import RateLimiter, write_units
from ..core.changes import Change, Op
from ..core.codec import Image, decode_image, item_size
from ..core.errors import PermanentError, RetryableError
from ..core.versions import version_of
from ..table.writer import Outcome, TableWriter
from .clients import Json, VerifyClients
from .compare import BATCH_GET_MAX, key_names, ref
from .progress import LEASE_MARGIN_S, REAL, VerifyStore, part
from .recheck import read_both, readers
from .report import Parts
from .settings import VerifySettings

_COUNTS = ("repaired", "unrepaired", "equal", "targetChanged")
Reread = Callable[[list[Image]], tuple[dict[str, Image], dict[str, Image]]]


def _change(key: Image, source: Image | None, version_ms: int, settings: VerifySettings) -> Change:
    kid = ref(key)
    if source is None:
        return Change(kid, key, Op.DELETE, None, None, "", version_ms, False, {})
    return Change(kid, key, Op.PUT, source, version_of(source, settings.versions), "", version_ms, False, {})


def repair_lines(
    lines: list[Json],
    keys: list[Image],
    writer: TableWriter,
    reread: Reread,
    settings: VerifySettings,
    ignore: frozenset[str],
    now_ms: int,
    writes: RateLimiter | None = None,
) -> list[tuple[str, str]]:
    """The outcome and reason of each line (real differences), writing where the rule allows."""
    sources, targets = reread(keys)  # immediately before the writes
    outcomes: list[tuple[str, str]] = []
    planned: list[tuple[Change, Image | None]] = []
    for line, key in zip(lines, keys, strict=True):
        s, t = sources.get(ref(key)), targets.get(ref(key))
        compared = (line.get("target") or {}).get("digest")
        if same_item(s, t, ignore):
            outcomes.append(("equal", "equal when read before the repair"))
        elif (digest(t) if t is not None else None) != compared:
            outcomes.append(("targetChanged", "the target changed since it was compared: left to replication"))
        else:
            planned.append((_change(key, s, now_ms, settings), t))
            outcomes.append(("planned", ""))
    if writes is not None and planned:
        writes.spend(write_units([item_size(c.item) if c.item else 1 for c, _ in planned], transactional=False))
    results = writer.apply_guarded(planned) if planned else {}
    written = [c.key for c, _ in planned if results.get(c.key_id) is Outcome.APPLIED]
    after_s, after_t = reread(written) if written else ({}, {})
    it = iter(planned)
    final: list[tuple[str, str]] = []
    for outcome in outcomes:
        if outcome[0] != "planned":
            final.append(outcome)
            continue
        change, _ = next(it)
        result = results.get(change.key_id)
        if result is Outcome.APPLIED:
            equal = same_item(after_s.get(change.key_id), after_t.get(change.key_id), ignore)
            final.append(("repaired", "written") if equal else ("unrepaired", "written, but the sides differ again"))
        elif result is Outcome.STALE:
            why = (
                "the target holds a version at least as new as the source's"
                if settings.mode != "ordered" and change.op is Op.PUT
                else "a write reached the target between the read and the write"
            )
            final.append(("unrepaired", why))
        elif isinstance(result, (PermanentError, RetryableError)):
            final.append(("unrepaired", f"{result.reason}: {str(result)[:200]}"))
        else:
            final.append(("unrepaired", "no result"))
    return final


def repair_segment(
    state: Json, settings: VerifySettings, clients: VerifyClients, *, owner: str, budget_seconds: float
) -> Json:
    """Repair the real differences of one side's segment, part after part, until done or out of time."""
    verify_id, side, segment = str(state["verifyId"]), str(state["side"]), int(state["segment"])
    started = clients.now()
    store = VerifyStore(clients.source, settings.progress_table)
    name = part("repair", side, segment)
    checkpoint = store.claim(verify_id, name, owner, started, budget_seconds + LEASE_MARGIN_S)
    total = int(store.read(verify_id, part("scan", side, segment)).get("parts", 0))
    counts = {c: int(checkpoint.get(c, 0)) for c in _COUNTS}
    cursor = int(checkpoint.get("cursor", 0))
    files = Parts(clients.s3, settings.report_bucket, settings.report_prefix, verify_id)
    ignore = frozenset(state.get("ignore") or ())
    names = key_names(state, clients.source, settings.source_table)
    writer = TableWriter(
        clients.target.client("dynamodb", pool=settings.read_concurrency + 2),
        settings.target.table,
        mode="ordered" if settings.mode == "ordered" else "lww",
        attrs=settings.versions,
        concurrency=settings.read_concurrency,
        sleep=clients.sleep,
    )
    writes = RateLimiter(float(state.get("targetWriteUnitsPerSecond") or 0), clients.now, clients.sleep)
    try:
        with (
            ThreadPoolExecutor(max_workers=settings.read_concurrency) as pool,
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="both-sides") as both,
        ):
            source, target = readers(settings, clients, state, names, pool)

            def reread(keys: list[Image]) -> tuple[dict[str, Image], dict[str, Image]]:
                return read_both(keys, source, target, both)

            while cursor < total:
                lines = files.get(files.key("rechecked", side, segment, cursor))
                real = [line for line in lines if line["class"] in REAL]
                for i in range(0, len(real), BATCH_GET_MAX):
                    chunk = real[i : i + BATCH_GET_MAX]
                    keys = [decode_image(line["key"]) for line in chunk]
                    now_ms = int(clients.now() * 1000)
                    outcomes = repair_lines(chunk, keys, writer, reread, settings, ignore, now_ms, writes)
                    for line, (outcome, why) in zip(chunk, outcomes, strict=True):
                        line["repair"], line["repairWhy"] = outcome, why
                        counts[outcome if outcome in counts else "unrepaired"] += 1
                files.put(files.key("repaired", side, segment, cursor), lines)
                cursor += 1
                store.save(verify_id, name, owner, {**counts, "cursor": cursor, "done": cursor >= total})
                if clients.now() - started > budget_seconds:
                    break
            if total == 0:
                store.save(verify_id, name, owner, {**counts, "cursor": 0, "done": True})
    finally:
        store.release(verify_id, name, owner)
    return {**state, "done": cursor >= total, "calls": int(state.get("calls", 0)) + 1, **counts}
