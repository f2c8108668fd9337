"""The demo's S3 phase: a bucket of a few thousand objects backfilled while live puts and deletes flow.

Two runs, each on its own bucket: into a bucket of another account (AssumeRole + ExternalId: server-side
copies) and into a bucket of the other partition (cn-north-1, peer keys: streamed copies). Each bucket is
seeded with objects of mixed sizes (some multipart), then its events are switched on; live traffic
(overwrites, new keys, deletes) starts, bucket_replicator consumes the queue as Lambda's SQS source would,
and the backfill workflow copies the existing objects meanwhile. When the traffic stops and the queue is
drained, the bucket compare must find 0 differences. `run(say)` returns the figures.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "bridge"), str(ROOT)]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
logging.getLogger("werkzeug").setLevel(logging.ERROR)

from ddb_bridge.s3.compare import compare_buckets  # noqa: E402
from ddb_bridge.s3.settings import MIB, BucketPair  # noqa: E402
from harness import moto_server  # noqa: E402
from harness.s3_world import EVENTS, BucketWorld, bucket_world  # noqa: E402
from harness.sqs_source import take_all  # noqa: E402
from harness.workflows import start, wait  # noqa: E402

OBJECTS = int(os.environ.get("DEMO_S3_OBJECTS", "2000"))
LIVE_SECONDS = float(os.environ.get("DEMO_S3_LIVE_SECONDS", "6"))
MULTIPART = int(os.environ.get("DEMO_S3_MULTIPART", "3"))


def _seed(world: BucketWorld, count: int, rng: random.Random) -> int:
    """Objects of mixed sizes (and a few multipart ones of 11 MiB in 5 MiB parts); returns the bytes."""
    total = 0
    for i in range(count):
        size = rng.choice([200, 1500, 4000, 12000, 70000]) if i % 50 else 300_000
        key = f"{rng.choice(['img', 'doc', 'log', 'raw'])}/{i % 37:02d}/obj {i:05d}+v.bin"
        world.put(key, rng.randbytes(size), ContentType="application/octet-stream", Metadata={"seq": str(i)})
        total += size
    for n in range(MULTIPART):
        key = f"big/archive-{n}.tar"
        body = rng.randbytes(11 * MIB)
        up = world.s3.create_multipart_upload(Bucket=world.source_bucket, Key=key, ContentType="application/x-tar")
        parts = []
        for p in range(3):
            chunk = body[p * 5 * MIB : (p + 1) * 5 * MIB]
            r = world.s3.upload_part(
                Bucket=world.source_bucket, Key=key, UploadId=up["UploadId"], PartNumber=p + 1, Body=chunk
            )
            parts.append({"ETag": r["ETag"], "PartNumber": p + 1})
        world.s3.complete_multipart_upload(
            Bucket=world.source_bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
        )
        total += len(body)
    return total


def _events_on(world: BucketWorld) -> None:
    arn = world.sqs.get_queue_attributes(QueueUrl=world.queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    world.s3.put_bucket_notification_configuration(
        Bucket=world.source_bucket,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": EVENTS}]},
    )
    take_all(world.sqs, world.queue_url)  # the s3:TestEvent


def _traffic(world: BucketWorld, rng: random.Random, seconds: float, counts: dict[str, int]) -> None:
    keys = [
        o["Key"]
        for p in world.s3.get_paginator("list_objects_v2").paginate(Bucket=world.source_bucket)
        for o in p.get("Contents", [])
        if not o["Key"].startswith("big/")
    ]
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        roll = rng.random()
        if roll < 0.4 and keys:
            world.put(rng.choice(keys), rng.randbytes(rng.choice([100, 3000])), Metadata={"live": str(n)})
            counts["overwrites"] += 1
        elif roll < 0.7:
            key = f"live/new {n:05d}.txt"
            world.put(key, f"live {n}".encode())
            keys.append(key)
            counts["new"] += 1
        elif keys:
            world.delete(keys.pop(rng.randrange(len(keys))))
            counts["deletes"] += 1
        time.sleep(0.01)


def _one(target: str, say: Callable[[str], None], seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    world = bucket_world(notify=False, cross_partition=target == "partition", visibility_s=5)
    where = "cn-north-1 (other partition, peer keys)" if target == "partition" else "eu-west-1 (other account)"
    seeded = _seed(world, OBJECTS, rng)
    say(
        f"{OBJECTS + MULTIPART} objects ({seeded / MIB:.1f} MiB, {MULTIPART} multipart) in {world.source_bucket}; "
        f"target {where}"
    )
    _events_on(world)
    replicator = world.replicator()
    reports: list[Any] = []
    replicator.layer_module("ddb_bridge.s3.replicator").report_listeners.append(reports.append)
    source = world.source_of(replicator, batch_size=10)
    stop = threading.Event()

    def deliver() -> None:
        while not stop.is_set():
            if source.poll_once() == 0:
                time.sleep(0.05)

    counts = {"overwrites": 0, "new": 0, "deletes": 0}
    consumer = threading.Thread(target=deliver, daemon=True)
    traffic = threading.Thread(target=_traffic, args=(world, rng, LIVE_SECONDS, counts), daemon=True)
    started = time.monotonic()
    consumer.start()
    traffic.start()
    machine = world.backfill_machine(warm=4)
    execution = start(machine, {"ranges": 8, "maxConcurrency": 8})
    say("backfill running while live puts, overwrites and deletes flow through bucket_replicator")
    result = wait(execution, timeout_s=900)
    traffic.join()
    stop.set()
    consumer.join()
    source.drain(timeout_s=300, concurrency=2)
    seconds = time.monotonic() - started
    if result["status"] != "SUCCEEDED":
        raise RuntimeError(f"bucket backfill {result['status']}: {result.get('cause')}")
    out = result["output"]
    say(
        f"backfill: {out['copied']} copied ({out['bytesCopied'] / MIB:.1f} MiB), {out['skipped']} already there, "
        f"{out['failed']} failed, {out['objectsPerSecond']} objects/s"
    )
    live = {
        "copied": sum(r.copied for r in reports),
        "deleted": sum(r.deleted for r in reports),
        "skipped_identical": sum(r.skipped_identical for r in reports),
        "stale_dropped": sum(r.stale for r in reports),
        "parked": sum(r.parked for r in reports),
    }
    lags = sorted(lag for r in reports for lag in r.lags_ms)
    say(f"live: {counts} at the source; replicator applied {live}")
    report = compare_buckets(world.s3, world.target, BucketPair(world.source_bucket, world.target_bucket), ranges=8)
    say(
        f"bucket compare: {report.objects} objects, missing {report.missing}, extra {report.extra}, "
        f"different {report.different}"
    )
    return {
        "target": where,
        "objects": OBJECTS + MULTIPART,
        "mib": round(seeded / MIB, 1),
        "backfill": {k: out[k] for k in ("copied", "skipped", "failed", "bytesCopied", "objectsPerSecond", "ranges")},
        "live_traffic": counts,
        "replicator": live,
        "lag_ms_p50": lags[len(lags) // 2] if lags else None,
        "seconds": round(seconds, 1),
        "differences": report.missing + report.extra + report.different,
        "compare": report.as_dict(),
    }


def run(say: Callable[[str], None]) -> dict[str, Any]:
    """Both runs (other account, other partition); `differences` must be 0 in each."""
    return {"account": _one("account", say, 1), "partition": _one("partition", say, 2)}


if __name__ == "__main__":
    import json

    aws = moto_server.start()
    try:
        figures = run(lambda m: print(f"[{time.strftime('%H:%M:%S')}] s3        {m}", flush=True))
        print(json.dumps({k: {x: y for x, y in v.items() if x != "compare"} for k, v in figures.items()}, indent=2))
        sys.exit(0 if all(v["differences"] == 0 for v in figures.values()) else 1)
    finally:
        aws.stop()
