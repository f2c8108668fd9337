"""The recheck: every difference seen once is read again on both sides, consistently, and judged.

A difference is real only if it outlives the recheck delay unchanged. The rules, in order:

1. both sides are equal now (canonical form): it settled; not a difference.
2. either side changed since it was first read: a write is on its way; **in flight**.
3. with versions (`lww`, `bidirectional`): the older side has a newer change coming, written less than
   `in_flight_seconds` ago (one-way: the target is older than the source; bidirectional: either side is
   older than the other); **in flight**.
4. otherwise it is real: **missing** (the target lacks the key), **extra** (the source lacks it) or
   **different**.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..core.canonical import digest, same_item
from ..core.capacity import RateLimiter
from ..core.codec import Image, decode_image
from ..core.settings import VersionAttrs
from ..core.versions import Version, decode_version, version_of
from .clients import Json, VerifyClients
from .compare import BATCH_GET_MAX, KeyReader, ReadStats, key_names, ref
from .progress import CLASSES, LEASE_MARGIN_S, VerifyStore, part
from .report import Parts, add_samples
from .settings import VerifySettings


@dataclass(frozen=True)
class Verdict:
    """What the recheck makes of one difference: `settled`, `inFlight`, `missing`, `extra` or `different`."""

    kind: str
    why: str


def _version(v: Version | None) -> list[Any] | None:
    """A version as the report shows it: [microseconds since the epoch, origin]."""
    return [v.ts, v.origin] if v is not None else None


def item_version(image: Image | None, attrs: VersionAttrs, bridge_attr: str | None = None) -> Version | None:
    """The version an item shows: its writers' stamp, else (bidirectional) the bridge's own attribute.

    The attribute holds `<digest>:<version>`; it counts only while the digest matches the rest of the item
    (a local write that kept the attribute of a replicated copy shows no version).
    """
    version = version_of(image, attrs)
    if version is not None or not bridge_attr or not image:
        return version
    raw = image.get(bridge_attr)
    text = raw.get("S") if isinstance(raw, dict) else None
    if not isinstance(text, str) or ":" not in text:
        return None
    expected, _, encoded = text.partition(":")
    if digest(image, ignore=(bridge_attr,), size=12) != expected:
        return None
    return decode_version(encoded)


def classify(
    first: Json,
    source: Image | None,
    target: Image | None,
    *,
    mode: str,
    attrs: VersionAttrs,
    ignore: Collection[str],
    now_ms: int,
    in_flight_ms: int,
    bridge_attr: str | None = None,
) -> Verdict:
    """Judge one difference from its first reading (`first`: digests) and both sides read again now."""
    if same_item(source, target, ignore):
        return Verdict("settled", "equal when read again")
    now_source = digest(source) if source is not None else None
    now_target = digest(target) if target is not None else None
    if now_source != first["source"]:
        return Verdict("inFlight", "the source changed during the verify")
    if now_target != first["target"]:
        return Verdict("inFlight", "the target changed during the verify")
    kind = "missing" if target is None else "extra" if source is None else "different"
    if mode == "ordered":
        return Verdict(kind, "unchanged after the recheck delay")
    vs, vt = item_version(source, attrs, bridge_attr), item_version(target, attrs, bridge_attr)
    sides = [("source", vs, vt)] if mode == "lww" else [("source", vs, vt), ("target", vt, vs)]
    for name, newer, older in sides:
        if newer is not None and (older is None or newer > older):
            age_ms = now_ms - newer.ts // 1000  # versions are in microseconds
            if age_ms <= in_flight_ms:
                return Verdict("inFlight", f"the {name} holds a newer version, written {max(0, age_ms) // 1000} s ago")
            return Verdict(kind, f"the {name} holds a newer version, written {age_ms // 1000} s ago: not replicated")
    if vs is not None and vs == vt:
        return Verdict(kind, "same version on both sides, different content")
    if vt is not None and (vs is None or vt > vs):
        return Verdict(kind, "the target holds a newer version than the source")
    return Verdict(kind, "unchanged after the recheck delay, no version to order the two sides")


def side_of(image: Image | None, attrs: VersionAttrs, bridge_attr: str | None = None) -> Json | None:
    """What the report says of one side: its digest and version (never its values)."""
    if image is None:
        return None
    return {"digest": digest(image), "version": _version(item_version(image, attrs, bridge_attr))}


def read_both(
    keys: list[Image], source: KeyReader, target: KeyReader, pool: ThreadPoolExecutor
) -> tuple[dict[str, Image], dict[str, Image]]:
    """Both sides of these keys, read at the same time (consistent reads)."""
    s = pool.submit(source.read, keys)
    t = pool.submit(target.read, keys)
    return s.result(), t.result()


def readers(
    settings: VerifySettings, clients: VerifyClients, state: Json, key_names: tuple[str, ...], pool: ThreadPoolExecutor
) -> tuple[KeyReader, KeyReader]:
    """Consistent readers of both tables, each at its planned rate."""
    source = KeyReader(
        clients.source,
        settings.source_table,
        key_names,
        consistent=True,
        limiter=RateLimiter(float(state.get("sourceReadUnitsPerSecond") or 0), clients.now, clients.sleep),
        pool=pool,
        sleep=clients.sleep,
    )
    target = KeyReader(
        clients.target.client("dynamodb", pool=settings.read_concurrency + 2),
        settings.target.table,
        key_names,
        consistent=True,
        limiter=RateLimiter(float(state.get("targetReadUnitsPerSecond") or 0), clients.now, clients.sleep),
        pool=pool,
        sleep=clients.sleep,
    )
    return source, target


def recheck_segment(
    state: Json, settings: VerifySettings, clients: VerifyClients, *, owner: str, budget_seconds: float
) -> Json:
    """Recheck the candidates of one side's segment, part after part, until done or out of time."""
    verify_id, side, segment = str(state["verifyId"]), str(state["side"]), int(state["segment"])
    started = clients.now()
    store = VerifyStore(clients.source, settings.progress_table)
    name = part("recheck", side, segment)
    checkpoint = store.claim(verify_id, name, owner, started, budget_seconds + LEASE_MARGIN_S)
    total = int(store.read(verify_id, part("scan", side, segment)).get("parts", 0))
    counts = {c: int(checkpoint.get(c, 0)) for c in (*CLASSES, "settled")}
    samples: dict[str, list[Json]] = json_or(checkpoint.get("samples"), {})
    cursor = int(checkpoint.get("cursor", 0))
    files = Parts(clients.s3, settings.report_bucket, settings.report_prefix, verify_id)
    ignore = frozenset(state.get("ignore") or ())
    bridge_attr = next(iter(settings.bridge_attributes), None)
    names = key_names(state, clients.source, settings.source_table)
    stats = ReadStats()
    try:
        with (
            ThreadPoolExecutor(max_workers=settings.read_concurrency) as pool,
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="both-sides") as both,
        ):
            source, target = readers(settings, clients, state, names, pool)
            while cursor < total:
                lines = files.get(files.key("candidates", side, segment, cursor))
                out: list[Json] = []
                for i in range(0, len(lines), BATCH_GET_MAX):
                    chunk = lines[i : i + BATCH_GET_MAX]
                    keys = [decode_image(line["key"]) for line in chunk]
                    now_source, now_target = read_both(keys, source, target, both)
                    now_ms = int(clients.now() * 1000)
                    for line, key in zip(chunk, keys, strict=True):
                        s, t = now_source.get(ref(key)), now_target.get(ref(key))
                        verdict = classify(
                            line,
                            s,
                            t,
                            mode=settings.mode,
                            attrs=settings.versions,
                            ignore=ignore,
                            now_ms=now_ms,
                            in_flight_ms=settings.in_flight_seconds * 1000,
                            bridge_attr=bridge_attr,
                        )
                        counts[verdict.kind] += 1
                        if verdict.kind == "settled":
                            continue
                        result = {
                            "key": line["key"],
                            "class": verdict.kind,
                            "pass": side,
                            "why": verdict.why,
                            "source": side_of(s, settings.versions, bridge_attr),
                            "target": side_of(t, settings.versions, bridge_attr),
                        }
                        out.append(result)
                        add_samples(samples, result, int(state.get("sampleSize", 10)))
                files.put(files.key("rechecked", side, segment, cursor), out)
                cursor += 1
                store.save(
                    verify_id,
                    name,
                    owner,
                    {**counts, "cursor": cursor, "done": cursor >= total, "samples": _json(samples)},
                )
                if clients.now() - started > budget_seconds:
                    break
            if total == 0:
                store.save(verify_id, name, owner, {**counts, "cursor": 0, "done": True, "samples": _json(samples)})
            stats.add(source.stats)
            stats.add(target.stats)
    finally:
        store.release(verify_id, name, owner)
    return {
        **state,
        "done": cursor >= total,
        "calls": int(state.get("calls", 0)) + 1,
        "rechecked": sum(counts.values()),
        "readRequests": int(state.get("readRequests", 0)) + stats.requests,
    }


def json_or(text: Any, default: Any) -> Any:
    """A JSON field of a checkpoint, or `default` when absent."""
    return json.loads(text) if isinstance(text, str) and text else default


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
