"""S3 benchmarks, each figure beside its baseline measured in the same run on the same data (moto over HTTP).

1. A large object across partitions (streamed: ranged GETs -> UploadPart, parts in parallel) against the
   hand-written event Lambda's way (read the whole object, then one PutObject): MB/s and peak memory of
   this process (tracemalloc). moto runs in a process of its own, so the peak is the copier's alone.
   moto's own cost is measured beside it: one plain GET + PUT of the object, and the very requests the
   streamed copy makes (ranged GETs, UploadPart) in a plain sequential loop.
2. The backfill of many small objects into another account (statemachine/bucket_backfill.asl.json as
   deployed: key ranges in a distributed Map, server-side CopyObject, checksum skip) against a sequential
   copy-each-object script (list, then GET + PUT per object, one at a time, as a sync script does):
   objects/s and requests per object.
`run()` returns the figures; `make bench` prints them, or run this file on its own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "bridge"), str(ROOT)]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
logging.getLogger("werkzeug").setLevel(logging.ERROR)

from ddb_bridge.s3.copy import ObjectCopier  # noqa: E402
from ddb_bridge.s3.settings import MIB, CopyOptions  # noqa: E402
from harness import moto_server  # noqa: E402
from harness.s3_world import BucketWorld, bucket_world  # noqa: E402
from harness.workflows import start as start_execution  # noqa: E402
from harness.workflows import wait as wait_execution  # noqa: E402

LARGE_MB = int(os.environ.get("BENCH_S3_LARGE_MB", "128"))
SMALL_OBJECTS = int(os.environ.get("BENCH_S3_OBJECTS", "2000"))
RANGES = int(os.environ.get("BENCH_S3_RANGES", "8"))
CONCURRENCY = int(os.environ.get("BENCH_S3_PART_CONCURRENCY", "4"))
ONLY = os.environ.get("BENCH_S3_ONLY", "")  # "large" or "small" to run one of the two


def _peak(fn: Any) -> tuple[float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        fn()
        return time.perf_counter() - started, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def bench_large(world: BucketWorld) -> dict[str, Any]:
    """One large object into the other partition: streamed parts vs read-whole-object."""
    size = LARGE_MB * MIB
    body = os.urandom(size)
    digest = hashlib.sha256(body).hexdigest()
    world.put("large/object.bin", body)
    del body
    source, target = world.s3, world.target

    part = 8 * MIB

    def floor() -> None:  # what moto costs for the bytes alone: one GET of the object, one PUT of it
        data = source.get_object(Bucket=world.source_bucket, Key="large/object.bin")["Body"].read()
        target.put_object(Bucket=world.target_bucket, Key="floor/object.bin", Body=data)

    def ranged_floor() -> None:  # the same bytes as 8 MiB ranged GETs, one at a time (no upload)
        for start in range(0, size, part):
            end = min(size, start + part) - 1
            source.get_object(Bucket=world.source_bucket, Key="large/object.bin", Range=f"bytes={start}-{end}")[
                "Body"
            ].read()

    def naive() -> None:
        data = source.get_object(Bucket=world.source_bucket, Key="large/object.bin")["Body"].read()
        target.put_object(Bucket=world.target_bucket, Key="naive/object.bin", Body=data)

    def streamed_floor() -> None:  # the very requests the streamed copy makes, in a plain sequential loop
        key = "floor/streamed.bin"
        upload = target.create_multipart_upload(Bucket=world.target_bucket, Key=key)["UploadId"]
        parts = []
        for n, start in enumerate(range(0, size, part), 1):
            end = min(size, start + part) - 1
            data = source.get_object(Bucket=world.source_bucket, Key="large/object.bin", Range=f"bytes={start}-{end}")[
                "Body"
            ].read()
            etag = target.upload_part(Bucket=world.target_bucket, Key=key, UploadId=upload, PartNumber=n, Body=data)
            parts.append({"ETag": etag["ETag"], "PartNumber": n})
        target.complete_multipart_upload(
            Bucket=world.target_bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
        )

    copier = ObjectCopier(
        source,
        target,
        world.source_bucket,
        world.target_bucket,
        CopyOptions(server_side=False, part_size=part, concurrency=CONCURRENCY),
    )
    head = copier.head_source("large/object.bin")
    assert head is not None

    def ours() -> None:
        copier.copy("large/object.bin", "ours/object.bin", head)

    floor_s, _ = _peak(floor)
    ranged_s, _ = _peak(ranged_floor)
    streamed_floor_s, _ = _peak(streamed_floor)
    naive_s, naive_peak = _peak(naive)
    ours_s, ours_peak = _peak(ours)
    for key in ("naive/object.bin", "ours/object.bin"):
        got = hashlib.sha256(target.get_object(Bucket=world.target_bucket, Key=key)["Body"].read()).hexdigest()
        assert got == digest, key
    mb = size / MIB
    return {
        "object_mb": LARGE_MB,
        "ours_mb_per_s": round(mb / ours_s, 1),
        "naive_mb_per_s": round(mb / naive_s, 1),
        "throughput_ratio": round(naive_s / ours_s, 2),
        "ours_peak_mb": round(ours_peak / MIB, 1),
        "naive_peak_mb": round(naive_peak / MIB, 1),
        "peak_memory_ratio": round(ours_peak / naive_peak, 3),
        "moto_get_put_mb_per_s": round(mb / floor_s, 1),
        "moto_ranged_gets_only_mb_per_s": round(mb / ranged_s, 1),
        "moto_same_requests_sequential_mb_per_s": round(mb / streamed_floor_s, 1),
        "ours_vs_same_requests_ratio": round(streamed_floor_s / ours_s, 2),
        "part_concurrency": CONCURRENCY,
        "byte_identical": True,
    }


def bench_small(world: BucketWorld) -> dict[str, Any]:
    """Many small objects into another account: the backfill workflow vs a sequential copy script."""
    sizes = [1024 + (i * 37) % 3072 for i in range(SMALL_OBJECTS)]
    for i, n in enumerate(sizes):
        world.put(f"{'0123456789abcdef'[i % 16]}/{i:06d}.json", os.urandom(n))
    source, target = world.s3, world.target
    started = time.perf_counter()
    for page in source.get_paginator("list_objects_v2").paginate(Bucket=world.source_bucket):
        for obj in page.get("Contents", []):
            data = source.get_object(Bucket=world.source_bucket, Key=obj["Key"])["Body"].read()
            target.put_object(Bucket=world.target_bucket, Key="naive/" + obj["Key"], Body=data)
    naive_s = time.perf_counter() - started
    machine = world.backfill_machine(warm=RANGES, TARGET_PREFIX="ours/")
    execution = start_execution(machine, {"ranges": RANGES, "maxConcurrency": RANGES})
    result = wait_execution(execution, timeout_s=900)
    assert result["status"] == "SUCCEEDED", result.get("cause")
    out = result["output"]
    ours_s = (result["stopDate"] - result["startDate"]).total_seconds()
    copied = [k for k in world.contents(target, world.target_bucket) if k.startswith("ours/")]
    assert len(copied) == SMALL_OBJECTS and out["copied"] == SMALL_OBJECTS
    again = wait_execution(start_execution(machine, {"ranges": RANGES}), timeout_s=900)
    return {
        "objects": SMALL_OBJECTS,
        "ours_objects_per_s": round(SMALL_OBJECTS / ours_s, 1),
        "naive_objects_per_s": round(SMALL_OBJECTS / naive_s, 1),
        "ratio": round(naive_s / ours_s, 2),
        "ranges": out["ranges"],
        "rerun_copied": again["output"]["copied"],
        "rerun_skipped_identical": again["output"]["skipped"],
    }


def run() -> dict[str, Any]:
    """Both benchmarks, moto in a process of its own."""
    out: dict[str, Any] = {}
    with moto_server.running(own_process=True):
        if ONLY != "small":
            out["large_streamed_copy"] = bench_large(bucket_world(notify=False, cross_partition=True))
        if ONLY != "large":
            out["small_objects_backfill"] = bench_small(bucket_world(notify=False))
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
