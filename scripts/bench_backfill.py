"""Backfill throughput against the usual hand-written copy script, same data, same run, moto over HTTP.

The baseline is what a copy script usually does: one sequential Scan, then one PutItem per item.
The backfill is statemachine/backfill.asl.json as deployed: a distributed Map over parallel-scan
segments, BatchWriteItem 25 items per request (overwrite mode: nothing else writes the target), the
workflow's default page size. Both copy the same source table into a table of the target account
(reached by AssumeRole).

moto runs in a process of its own (`moto_server.start_process`): on AWS the service's CPU is not the
caller's, and in one process the server and every "Lambda" share one interpreter lock, which hides
what the segments do in parallel. `BENCH_BACKFILL_MOTO=inline` measures with moto in this process.
The two are measured in ROUNDS interleaved rounds (baseline, backfill, baseline, ...) and the median
ratio is the figure; every round is printed. The backfill's time is the execution's own (its
DescribeExecution start and stop dates). `run()` returns the figures; `make bench` prints them, or run
this file on its own.
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "bridge"), str(ROOT)]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
logging.getLogger("werkzeug").setLevel(logging.ERROR)

from harness import moto_server  # noqa: E402
from harness.load_world import LoadWorld, load_world  # noqa: E402
from harness.workflows import start as start_execution  # noqa: E402
from harness.workflows import wait as wait_execution  # noqa: E402
from harness.world import scan_all  # noqa: E402

ITEMS = int(os.environ.get("BENCH_BACKFILL_ITEMS", "12000"))
BASELINE_SECONDS = float(os.environ.get("BENCH_BACKFILL_BASELINE_SECONDS", "4"))
SEGMENTS = int(os.environ.get("BENCH_BACKFILL_SEGMENTS", "4"))
ROUNDS = int(os.environ.get("BENCH_BACKFILL_ROUNDS", "3"))
CONCURRENCY = os.environ.get("BENCH_BACKFILL_CONCURRENCY", "8")  # the template's BackfillWriteConcurrency
PAGE = int(os.environ.get("BENCH_BACKFILL_PAGE", "1000"))  # the workflow's default


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


@contextmanager
def local_aws() -> Iterator[None]:
    """The moto of this benchmark: in a process of its own unless BENCH_BACKFILL_MOTO=inline.

    An inline server already running (`make bench`) is used as it is.
    """
    inline = os.environ.get("BENCH_BACKFILL_MOTO", "process") == "inline"
    if inline and "AWS_ENDPOINT_URL" in os.environ:
        yield
        return
    with moto_server.running(own_process=not inline):
        yield


def backfill(world: LoadWorld, machine: str) -> dict[str, Any]:
    """One backfill execution into a fresh target table; its figures, timed by the execution itself."""
    execution = start_execution(
        machine,
        {
            "writeMode": "overwrite",
            "totalSegments": SEGMENTS,
            "pageSize": PAGE,
            "throughputPercent": 100,
            "maxWriteUnitsPerSecond": 10_000_000,
            "maxReadUnitsPerSecond": 10_000_000,
        },
    )
    result = wait_execution(execution, timeout_s=300, poll_s=0.5)
    if result["status"] != "SUCCEEDED":
        raise RuntimeError(f"backfill {result['status']}: {result.get('cause')}")
    seconds = (result["stopDate"] - result["startDate"]).total_seconds()
    summary = result["output"]
    return {"items": summary["copied"], "seconds": seconds, "writeRequests": summary["writeRequests"]}


def run() -> dict[str, Any]:
    """Seed ITEMS items; copy them ROUNDS times with the baseline and with the backfill; returns the figures."""
    with local_aws():
        world = load_world()
        shape = {"payload": payload, "order": order, "small": small}[os.environ.get("BENCH_BACKFILL_SHAPE", "payload")]
        world.seed([shape(i) for i in range(ITEMS)])
        world.create_backfill_tables()
        schema = {
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        }
        machine = world.backfill_machine(warm=SEGMENTS, BACKFILL_WRITE_CONCURRENCY=CONCURRENCY)
        rounds: list[dict[str, Any]] = []
        for r in range(ROUNDS):
            world.target.create_table(TableName=f"{world.name}-baseline-{r}", **schema)
            base_items, base_seconds = baseline(world, f"{world.name}-baseline-{r}")
            if r:
                world.target.delete_table(TableName=world.target_table)
            world.create_target_table()
            ours = backfill(world, machine)
            equal = scan_all(world.target, world.target_table) == scan_all(world.source, world.source_table)
            rounds.append(
                {
                    "baseline_items_per_s": round(base_items / base_seconds, 1),
                    "backfill_items_per_s": round(ours["items"] / ours["seconds"], 1),
                    "backfill_seconds": round(ours["seconds"], 2),
                    "write_requests_per_item": round(ours["writeRequests"] / max(1, ours["items"]), 3),
                    "target_equals_source": equal and ours["items"] == ITEMS,
                }
            )
            rounds[-1]["speedup"] = round(rounds[-1]["backfill_items_per_s"] / rounds[-1]["baseline_items_per_s"], 1)
            print(
                f"  round {r + 1}: baseline (scan, then PutItem one at a time) {base_items} items in "
                f"{base_seconds:.1f}s = {rounds[-1]['baseline_items_per_s']:.0f} items/s; backfill (state machine, "
                f"{SEGMENTS} segments, BatchWriteItem) {ours['items']} items in {ours['seconds']:.1f}s = "
                f"{rounds[-1]['backfill_items_per_s']:.0f} items/s; {rounds[-1]['speedup']:.1f}x; target == source: "
                f"{rounds[-1]['target_equals_source']}",
                flush=True,
            )
    speedups = [r["speedup"] for r in rounds]
    figures = {
        "items": ITEMS,
        "moto": os.environ.get("BENCH_BACKFILL_MOTO", "process"),
        "segments": SEGMENTS,
        "write_concurrency": int(CONCURRENCY),
        "page_size": PAGE,
        "rounds": rounds,
        "baseline_items_per_s": statistics.median(r["baseline_items_per_s"] for r in rounds),
        "backfill_items_per_s": statistics.median(r["backfill_items_per_s"] for r in rounds),
        "speedup": statistics.median(speedups),
        "speedup_range": [min(speedups), max(speedups)],
        "write_requests_per_item": {"baseline": 1.0, "backfill": rounds[-1]["write_requests_per_item"]},
        "target_equals_source": all(r["target_equals_source"] for r in rounds),
    }
    figures["meets_10x"] = figures["speedup"] >= 10
    print(
        f"  median of {ROUNDS} rounds: baseline {figures['baseline_items_per_s']:.0f} items/s, backfill "
        f"{figures['backfill_items_per_s']:.0f} items/s, {figures['speedup']:.1f}x "
        f"({min(speedups):.1f}x-{max(speedups):.1f}x); write requests per item 1.0 against "
        f"{figures['write_requests_per_item']['backfill']}",
        flush=True,
    )
    return figures


if __name__ == "__main__":
    figures = run()
    sys.exit(0 if figures["target_equals_source"] and figures["meets_10x"] else 1)
