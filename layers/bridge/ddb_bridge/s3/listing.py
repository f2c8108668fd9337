"""The listing walk the backfill and the compare share: key ranges, and both buckets listed side by side.

A bucket is split into key ranges by probing its listing: ListObjectsV2 (MaxKeys=1, StartAfter=a start
plus one character plus the highest character) skips a whole group of keys per request and names the
first key of the next group; groups are refined a level deeper until there are enough of them.
Ranges are (after, upto]: `after` exclusive, as ListObjectsV2's StartAfter is, `upto` inclusive. The prefix
mapping source -> target keeps key order, so one range of the source and the same range of the target are
listed page by page and merge-joined.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .keys import source_key
from .settings import BucketPair

MAX_LEVELS = 3
MAX_PROBES = 400  # LIST requests a plan may spend (each MaxKeys=1)
TOP = "\U0010ffff"  # sorts after every character (its UTF-8 encoding is the largest)


def _first_after(s3: Any, bucket: str, prefix: str, start_after: str) -> str | None:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1}
    if start_after:
        kwargs["StartAfter"] = start_after
    contents = s3.list_objects_v2(**kwargs).get("Contents") or []
    return str(contents[0]["Key"]) if contents else None


def _groups(s3: Any, bucket: str, prefix: str, base: str, limit: int) -> list[str]:
    """The first key of each group of keys that share `base` plus one more character (one request per group)."""
    firsts: list[str] = []
    key = _first_after(s3, bucket, prefix, base)
    while key is not None and key.startswith(base) and len(firsts) < limit:
        firsts.append(key)
        if len(key) == len(base):
            key = _first_after(s3, bucket, prefix, key)
            continue
        key = _first_after(s3, bucket, prefix, base + key[len(base)] + TOP)  # skip the rest of this group
    return firsts


def plan_ranges(s3: Any, bucket: str, prefix: str, ranges: int, *, workers: int = 8) -> list[dict[str, Any]]:
    """About `ranges` key ranges over `prefix`: [{"range", "after", "upto"}] (None = open).

    Groups of keys by their next character after a common start are found by skipping over each group
    (StartAfter = start + char + the highest character), level by level, until there are enough.
    """
    ranges = max(1, ranges)
    if ranges == 1 or _first_after(s3, bucket, prefix, "") is None:
        return [{"range": 0, "after": None, "upto": None}]
    found: set[str] = set()
    bases = [prefix]
    spent = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in range(MAX_LEVELS):
            share = max(4, (MAX_PROBES - spent) // max(1, len(bases)))
            futures = [pool.submit(_groups, s3, bucket, prefix, base, share) for base in bases]
            levels = [f.result() for f in futures]
            spent += sum(len(g) + 1 for g in levels)
            next_bases: list[str] = []
            for base, firsts in zip(bases, levels, strict=True):
                found.update(firsts)
                next_bases.extend(k[: len(base) + 1] for k in firsts if len(k) > len(base))
            if len(found) >= 2 * ranges or spent >= MAX_PROBES or not next_bases:
                break
            bases = next_bases
    candidates = sorted(found)[1:]  # each is the first key of a group; the first group starts at the bucket's start
    if not candidates:
        return [{"range": 0, "after": None, "upto": None}]
    step = max(1.0, len(candidates) / ranges)
    picks = sorted({candidates[int(i * step)] for i in range(1, ranges) if int(i * step) < len(candidates)})
    # a group's first key opens the next range, so a range ends at a string just below it
    bounds = [_just_below(p) for p in picks]
    out = []
    after: str | None = None
    for i, upto in enumerate([*bounds, None]):
        out.append({"range": i, "after": after, "upto": upto})
        after = upto
    return out


def _just_below(key: str) -> str:
    """A string that sorts right before `key` and after every key that sorts before it (for (after, upto])."""
    last = key[-1]
    if last == "\x00":
        return key[:-1]
    return key[:-1] + chr(ord(last) - 1) + "\U0010ffff"


@dataclass
class Page:
    """One step of a range walk: source entries, the target entries of the same key span, and where it ended."""

    source: list[dict[str, Any]]
    target: dict[str, dict[str, Any]]  # by SOURCE key (mapped back)
    extra: list[str] = field(default_factory=list)  # target keys with no source entry in this span
    last: str | None = None  # the last source key the span covers (the next page starts after it)
    done: bool = False  # the range is exhausted


def _list(s3: Any, bucket: str, prefix: str, after: str | None, upto: str | None, limit: int) -> tuple[list[Any], bool]:
    """Keys in (after, upto] under prefix, at most `limit` (one or more pages); (entries, exhausted)."""
    out: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": min(1000, limit)}
    if after:
        kwargs["StartAfter"] = after
    while True:
        page = s3.list_objects_v2(**kwargs)
        for obj in page.get("Contents", []):
            if upto is not None and obj["Key"] > upto:
                return out, True
            out.append(obj)
            if len(out) >= limit:
                return out, False
        if not page.get("IsTruncated"):
            return out, True
        kwargs.pop("StartAfter", None)
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def _map_bound(pair: BucketPair, bound: str | None) -> str | None:
    """A source-space range bound in the target's key space (the mapping keeps order)."""
    if bound is None:
        return None
    if bound.startswith(pair.source_prefix):
        return pair.target_prefix + bound[len(pair.source_prefix) :]
    return None if bound < pair.source_prefix else pair.target_prefix + "\U0010ffff"


def walk(
    source_s3: Any,
    target_s3: Any,
    pair: BucketPair,
    rng: dict[str, Any],
    *,
    after: str | None = None,
    page_size: int = 1000,
) -> Iterator[Page]:
    """The range's pages from `after` (a checkpoint) on: a source page, then the target's entries of its span."""
    upto = rng.get("upto")
    after = after if after is not None else rng.get("after")
    while True:
        source, exhausted = _list(source_s3, pair.source_bucket, pair.source_prefix, after, upto, page_size)
        last = upto if exhausted else source[-1]["Key"]
        targets, _ = _list(
            target_s3, pair.target_bucket, pair.target_prefix, _map_bound(pair, after), _map_bound(pair, last), 10**9
        )
        by_source: dict[str, dict[str, Any]] = {}
        for obj in targets:
            key = source_key(pair, obj["Key"])
            if key is not None:
                by_source[key] = obj
        keys = {o["Key"] for o in source}
        yield Page(source, by_source, sorted(k for k in by_source if k not in keys), last, exhausted)
        if exhausted:
            return
        after = last
