"""Backfill throughput against the usual hand-written copy script, same data, same run, moto over HTTP.

The baseline is what a copy script usually does: one sequential Scan, then one PutItem per item.
The backfill is statemachine/backfill.asl.json as deployed: a distributed Map over parallel-scan
segments, BatchWriteItem 25 items per request (overwrite mode: nothing else writes the target).
Both copy the same source table into a table of the target account (reached by AssumeRole).

moto serves every request from this one Python process, so the segments' parallelism cannot show
(one GIL): the gain measured here is the per-request saving only; on DynamoDB, segments add to it.
`run()` returns the figures; `make bench` prints them, or run this file on its own.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "bridge"), str(ROOT)]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
logging.getLogger("werkzeug").setLevel(logging.ERROR)

from harness import moto_server  # noqa: E402
from harness.load_world import LoadWorld, load_world  # noqa: E402
from harness.workflows import run as run_execution  # noqa: E402
from harness.world import scan_all  # noqa: E402

ITEMS = int(os.environ.get("BENCH_BACKFILL_ITEMS", "12000"))
BASELINE_SECONDS = float(os.environ.get("BENCH_BACKFILL_BASELINE_SECONDS", "8"))
SEGMENTS = int(os.environ.get("BENCH_BACKFILL_SEGMENTS", "4"))
PAGE = int(os.environ.get("BENCH_BACKFILL_PAGE", "10000"))


def small(i: int) -> dict[str, Any]:
    """A key and a counter."""
    return {"pk": {"S": f"item#{i:07d}"}, "n": {"N": str(i)}}


def payload(i: int) -> dict[str, Any]:
    """A key and a 100-byte payload."""
    return {"pk": {"S": f"item#{i:07d}"}, "data": {"S": "x" * 100}}


def order(i: int) -> dict[str, Any]:
    """A typical item: an order of ~120 bytes with strings, numbers and a binary signature."""
    return {
        "pk": {"S": f"order#{i:07d}"},
        "customer": {"S": f"customer-{i % 977}"},
        "status": {"S": ("NEW", "PAID", "SHIPPED")[i % 3]},
        "total": {"N": f"{i * 7 % 10000}.{i % 100:02d}"},
        "lines": {"N": str(i % 9 + 1)},
        "sig": {"B": (i * 2654435761 % 2**32).to_bytes(4, "big") * 4},
    }


def baseline(world: LoadWorld, table: str) -> tuple[int, float]:
    """Sequential Scan -> one PutItem per item, for BASELINE_SECONDS; returns (items, seconds)."""
    target = world.target
    copied, started = 0, time.perf_counter()
    # Pages of 100: the baseline pays the Scan only for the items it gets to copy in its time.
    kwargs: dict[str, Any] = {"TableName": world.source_table, "Limit": 100}
    while time.perf_counter() - started < BASELINE_SECONDS:
        page = world.source.scan(**kwargs)
        for item in page["Items"]:
            target.put_item(TableName=table, Item=item)
            copied += 1
            if time.perf_counter() - started >= BASELINE_SECONDS:
                break
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return copied, time.perf_counter() - started


def run() -> dict[str, Any]:
    """Seed ITEMS items, copy them with the baseline and with the backfill workflow; returns the figures."""
    own_server = "AWS_ENDPOINT_URL" not in os.environ
    aws = moto_server.start() if own_server else None
    try:
        world = load_world()
        shape = {"payload": payload, "order": order, "small": small}[os.environ.get("BENCH_BACKFILL_SHAPE", "payload")]
        world.seed([shape(i) for i in range(ITEMS)])
        world.create_target_table()
        world.create_backfill_tables()
        schema = {
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        }
        world.target.create_table(TableName=f"{world.name}-baseline", **schema)

        base_items, base_seconds = baseline(world, f"{world.name}-baseline")
        base_rate = base_items / base_seconds
        print(
            f"  baseline (scan, then PutItem one at a time): {base_items} items in {base_seconds:.1f}s "
            f"= {base_rate:.0f} items/s",
            flush=True,
        )

        machine = world.backfill_machine(
            warm=SEGMENTS, BACKFILL_WRITE_CONCURRENCY=os.environ.get("BENCH_BACKFILL_CONCURRENCY", "2")
        )
        started = time.perf_counter()
        result = run_execution(
            machine,
            {
                "writeMode": "overwrite",
                "totalSegments": SEGMENTS,
                "pageSize": PAGE,
                "throughputPercent": 100,
                "maxWriteUnitsPerSecond": 10_000_000,
                "maxReadUnitsPerSecond": 10_000_000,
            },
            timeout_s=300,
        )
        seconds = time.perf_counter() - started
        if result["status"] != "SUCCEEDED":
            raise RuntimeError(f"backfill {result['status']}: {result.get('cause')}")
        summary = result["output"]
        rate = summary["copied"] / seconds
        equal = scan_all(world.target, world.target_table) == scan_all(world.source, world.source_table)
        print(
            f"  backfill (state machine, {SEGMENTS} segments, BatchWriteItem): {summary['copied']} items in "
            f"{seconds:.1f}s = {rate:.0f} items/s; {rate / base_rate:.1f}x the baseline; target == source: "
            f"{equal}",
            flush=True,
        )
        return {
            "items": ITEMS,
            "baseline_items": base_items,
            "baseline_items_per_s": round(base_rate, 1),
            "backfill_items": summary["copied"],
            "backfill_seconds": round(seconds, 2),
            "backfill_items_per_s": round(rate, 1),
            "speedup": round(rate / base_rate, 1),
            "segments": SEGMENTS,
            "lambda_calls": summary["calls"],
            "write_requests_per_item": {
                "baseline": 1.0,
                "backfill": round(summary["writeRequests"] / max(1, summary["copied"]), 3),
            },
            "meets_10x": rate / base_rate >= 10,
            "target_equals_source": equal,
        }
    finally:
        if aws is not None:
            aws.stop()


if __name__ == "__main__":
    figures = run()
    sys.exit(0 if figures["target_equals_source"] and figures["speedup"] >= 10 else 1)
