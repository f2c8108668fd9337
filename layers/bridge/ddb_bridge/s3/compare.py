"""Bucket compare: the backfill's listing walk, read-only; missing, extra and different keys, with samples.

`compare_buckets(source_s3, target_s3, pair)` returns a CompareReport. The command is `ddb-bridge bucket-compare`
(ddb_bridge.ops.bucket_compare); `python -m ddb_bridge.s3.compare` is the same command: exit 0 when the buckets
are equal, 1 on any difference, 2 on bad arguments, 3 when it could not compare.
"Different" is decided as the replicator decides "identical": equal listing ETags, or else both HEADs and
a checksum (checksums.py), never size alone.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from .checksums import ObjectHead, same_content, same_listing
from .keys import target_key
from .listing import plan_ranges, walk
from .settings import BucketPair


@dataclass
class CompareReport:
    """What differs between two buckets (under their prefixes); `ok` when nothing does."""

    source_bucket: str
    target_bucket: str
    objects: int = 0  # source objects compared
    bytes: int = 0
    missing: int = 0  # in the source, not in the target
    extra: int = 0  # in the target, not in the source
    different: int = 0  # in both, other content
    ranges: int = 0
    samples: dict[str, list[str]] = field(default_factory=lambda: {"missing": [], "extra": [], "different": []})

    @property
    def ok(self) -> bool:
        """True when the buckets hold the same keys with the same content."""
        return self.missing == 0 and self.extra == 0 and self.different == 0

    def merge(self, other: CompareReport, sample_limit: int) -> None:
        """Add another range's counts and samples."""
        for name in ("objects", "bytes", "missing", "extra", "different"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name, keys in other.samples.items():
            room = sample_limit - len(self.samples[name])
            self.samples[name].extend(keys[: max(0, room)])

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with `ok`."""
        return {**asdict(self), "ok": self.ok}


def _head(client: Any, bucket: str, key: str) -> ObjectHead | None:
    try:
        return ObjectHead.of(client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED"))
    except client.exceptions.ClientError as exc:
        if int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) == 404:
            return None
        raise


def compare_range(
    source_s3: Any, target_s3: Any, pair: BucketPair, rng: dict[str, Any], *, samples: int = 20, page_size: int = 1000
) -> CompareReport:
    """Compare one key range."""
    report = CompareReport(pair.source_bucket, pair.target_bucket)

    def note(kind: str, key: str) -> None:
        setattr(report, kind, getattr(report, kind) + 1)
        if len(report.samples[kind]) < samples:
            report.samples[kind].append(key)

    for page in walk(source_s3, target_s3, pair, rng, page_size=page_size):
        for entry in page.source:
            key = entry["Key"]
            report.objects += 1
            report.bytes += int(entry["Size"])
            other = page.target.get(key)
            if other is None:
                note("missing", key)
            elif not same_listing(entry, other):
                src = _head(source_s3, pair.source_bucket, key)
                dst = _head(target_s3, pair.target_bucket, target_key(pair, key))
                if src is None or dst is None or not same_content(src, dst):
                    note("different", key)
        for key in page.extra:
            note("extra", key)
    return report


def compare_buckets(
    source_s3: Any,
    target_s3: Any,
    pair: BucketPair,
    *,
    ranges: int = 8,
    workers: int = 8,
    samples: int = 20,
) -> CompareReport:
    """Compare `pair.source_bucket` (read with `source_s3`) and `pair.target_bucket` (`target_s3`), read-only.

    Keys under `pair.source_prefix` are compared with the same keys under `pair.target_prefix`; the
    bucket is split into about `ranges` key ranges compared `workers` at a time. Extra target keys are
    found only within the ranges of the source's prefix.
    """
    plan = plan_ranges(source_s3, pair.source_bucket, pair.source_prefix, ranges)
    total = CompareReport(pair.source_bucket, pair.target_bucket, ranges=len(plan))
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(plan)))) as pool:
        parts = pool.map(lambda r: compare_range(source_s3, target_s3, pair, r, samples=samples), plan)
        for part in parts:
            total.merge(part, samples)
    for name in total.samples:
        total.samples[name].sort()
    return total


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ddb_bridge.s3.compare ...` = `ddb-bridge bucket-compare ...`."""
    from ..ops.cli import main as cli_main

    return cli_main(["bucket-compare", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
