"""One call on one scan segment: read pages, look each page's keys up in the other table, keep candidates.

Source pass: every source item is looked up in the target (BatchGetItem of full items) and compared.
Target pass: only the target's keys are read (a keys-only projection, so half the bytes cross the
border), looked up in the source (keys only); a key the source lacks is a candidate extra, whose
target item is then read for its digest. First reads are eventually consistent (half the read units):
every candidate is read again, consistently, by the recheck. The checkpoint advances after each page,
once that page's candidates are in S3; the next page is read while this one is compared.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..core.capacity import RateLimiter
from ..core.codec import Image, decode_image, encode_image
from ..core.observability import logger
from .clients import Json, VerifyClients
from .compare import KeyReader, ReadStats, candidate, key_names, projection, ref, scan_units, source_candidates
from .progress import LEASE_MARGIN_S, REAL, VerifyStore, part
from .report import Parts
from .settings import VerifySettings

_FIELDS = ("scanned", "candidates", *REAL, "pages", "parts", "readRequests")


def scan_segment(
    state: Json, settings: VerifySettings, clients: VerifyClients, *, owner: str, budget_seconds: float
) -> Json:
    """Compare pages of one side's segment until it ends or the budget is spent; returns the new state."""
    verify_id, side, segment = str(state["verifyId"]), str(state["side"]), int(state["segment"])
    started = clients.now()
    store = VerifyStore(clients.source, settings.progress_table)
    name = part("scan", side, segment)
    checkpoint = store.claim(verify_id, name, owner, started, budget_seconds + LEASE_MARGIN_S)
    counts = {f: int(checkpoint.get(f, 0)) for f in _FIELDS}
    done = bool(checkpoint.get("done", False))
    last_key = json.loads(checkpoint["lastEvaluatedKey"]) if checkpoint.get("lastEvaluatedKey") else None
    try:
        if not done:
            done = _pages(state, settings, clients, store, owner, counts, last_key, started, budget_seconds)
    finally:
        store.release(verify_id, name, owner)
    logger.info("verify segment", extra={"verifyId": verify_id, "side": side, "segment": segment, **counts})
    return {**state, **counts, "done": done, "calls": int(state.get("calls", 0)) + 1}


def _pages(
    state: Json,
    settings: VerifySettings,
    clients: VerifyClients,
    store: VerifyStore,
    owner: str,
    counts: dict[str, int],
    last_key: Json | None,
    started: float,
    budget_seconds: float,
) -> bool:
    verify_id, side, segment = str(state["verifyId"]), str(state["side"]), int(state["segment"])
    names = key_names(state, clients.source, settings.source_table)
    ignore = frozenset(state.get("ignore") or ())
    target_client = clients.target.client("dynamodb", pool=settings.read_concurrency + 2)
    source_rate = RateLimiter(float(state.get("sourceReadUnitsPerSecond") or 0), clients.now, clients.sleep)
    target_rate = RateLimiter(float(state.get("targetReadUnitsPerSecond") or 0), clients.now, clients.sleep)
    files = Parts(clients.s3, settings.report_bucket, settings.report_prefix, verify_id)
    if side == "source":
        this_client, this_table, this_rate = clients.source, settings.source_table, source_rate
    else:
        this_client, this_table, this_rate = target_client, settings.target.table, target_rate
    scan: Json = {
        "TableName": this_table,
        "Segment": segment,
        "TotalSegments": int(state["totalSegments"]),
        "Limit": int(state.get("pageSize") or 1000),
        "ConsistentRead": False,
        "ReturnConsumedCapacity": "TOTAL",
    }
    if side == "target":
        scan.update(projection(names))

    def read(start: Json | None) -> Json:
        return dict(this_client.scan(**scan, **({"ExclusiveStartKey": start} if start else {})))

    with (
        ThreadPoolExecutor(max_workers=settings.read_concurrency, thread_name_prefix="batch-get") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as reader,
    ):
        if side == "source":
            other = KeyReader(target_client, settings.target.table, names, False, target_rate, pool, clients.sleep)
            extras = None
        else:
            other = KeyReader(
                clients.source, settings.source_table, names, False, source_rate, pool, clients.sleep, True
            )
            extras = KeyReader(target_client, settings.target.table, names, False, target_rate, pool, clients.sleep)
        slowest = 0.0
        done = False
        next_page = reader.submit(read, decode_image(last_key) if last_key else None)
        while not done:
            page_started = clients.now()
            page = next_page.result()
            lek = page.get("LastEvaluatedKey")
            if lek:
                next_page = reader.submit(read, lek)
            this_rate.spend(scan_units(page, this_table, False))
            items: list[Image] = page.get("Items", [])
            seen_ms = int(clients.now() * 1000)
            found = other.read([{n: i[n] for n in names} for i in items]) if items else {}
            if side == "source":
                lines = source_candidates(items, found, names, ignore, seen_ms)
            else:
                lines = _extras(items, found, names, extras, seen_ms)
            if lines:
                files.put(files.key("candidates", side, segment, counts["parts"]), lines)
                counts["parts"] += 1
            counts["scanned"] += len(items)
            counts["candidates"] += len(lines)
            for line in lines:
                counts[line["kind"]] += 1
            counts["pages"] += 1
            counts["readRequests"] += 1 + _requests(other, extras)
            done = lek is None
            store.save(
                verify_id,
                part("scan", side, segment),
                owner,
                {**counts, "done": done, "lastEvaluatedKey": json.dumps(encode_image(lek)) if lek else None},
            )
            now = clients.now()
            slowest = max(slowest, now - page_started)
            if not done and now - started + slowest * 1.5 > budget_seconds:
                break
    return done


def _requests(other: KeyReader, extras: KeyReader | None) -> int:
    """BatchGetItem requests made since the last call of this function (the readers' counters are reset)."""
    stats = ReadStats()
    for reader in (other, extras):
        if reader is not None:
            stats.add(reader.stats)
            reader.stats = ReadStats()
    return stats.requests


def _extras(
    keys: list[Image], found: dict[str, Any], names: tuple[str, ...], target: KeyReader | None, seen_ms: int
) -> list[Json]:
    """Target keys the source lacks, with the target item's digest (read again: the scan read keys only)."""
    lacking = [k for k in keys if ref({n: k[n] for n in names}) not in found]
    if not lacking or target is None:
        return []
    items = target.read(lacking)
    out = []
    for key in lacking:
        item = items.get(ref(key))
        if item is not None:  # a key gone from the target meanwhile is not a difference
            out.append(candidate(key, "extra", None, item, seen_ms))
    return out
