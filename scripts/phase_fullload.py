"""The demo's full-load phase: statemachine/full_load.asl.json in moto while writes keep flowing, then handover.

`run_full_load()` builds a source table (stream, PITR) with items of every type, the replicator's event
source disabled at TRIM_HORIZON, and the target account; starts live traffic; runs the full-load state
machine (pre-checks, export at T, import, counts, enable replication) printing each step; lets live
replication catch up from TRIM_HORIZON while the writers go on; stops them, drains, and compares the
tables item by item. It returns the figures; run this file to see the phase on its own.
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "bridge"), str(ROOT)]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
logging.getLogger("werkzeug").setLevel(logging.ERROR)

import boto3  # noqa: E402

from harness import moto_server  # noqa: E402
from harness.load_world import TableShape, load_world  # noqa: E402
from harness.workflows import start, states_entered, wait  # noqa: E402
from harness.workload import LiveTraffic, every_type_item  # noqa: E402
from harness.world import scan_all  # noqa: E402


def say(phase: str, message: str) -> None:
    """One progress line, in the demo's format."""
    print(f"[{time.strftime('%H:%M:%S')}] {phase:<9} {message}", flush=True)


def caught_up(batches: list[int], batch_size: int) -> bool:
    """Whether the poller has reached the stream's tip once (a batch shorter than the batch size)."""
    return any(n < batch_size for n in batches)


def percentile(values: list[int], q: float) -> float:
    """The q-th percentile (0-100), 0 when there is nothing."""
    if len(values) < 2:
        return float(values[0]) if values else 0.0
    return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1])


def run_full_load(
    *, items: int = 2000, live_rate: float = 50.0, live_seconds: float = 3.0, log: Callable[[str, str], None] = say
) -> dict[str, Any]:
    """Full load while writes keep flowing, then live replication; returns the figures (mismatches must be 0)."""
    own_server = "AWS_ENDPOINT_URL" not in os.environ
    aws = moto_server.start() if own_server else None
    try:
        return _run(items, live_rate, live_seconds, log)
    finally:
        if aws is not None:
            aws.stop()


def _run(items: int, live_rate: float, live_seconds: float, log: Callable[[str, str], None]) -> dict[str, Any]:
    started = time.monotonic()
    world = load_world(TableShape(key_schema=[("pk", "S")], gsi=None))
    world.seed([every_type_item(i) for i in range(items)])
    replicator = world.deploy_replicator(POWERTOOLS_SERVICE_NAME="demo-replicator")
    timed: list[tuple[float, Any]] = []  # (arrival in ms, table_replicator's batch report)
    replicator.layer_module("ddb_bridge.table.replicator").report_listeners.append(
        lambda r: timed.append((time.time() * 1000, r))
    )
    world.create_mapping()
    machine = world.full_load_machine()
    log(
        "full-load",
        f"source {world.source_table}: {items} items of every type, stream + PITR; the replicator's "
        "event source is created disabled at TRIM_HORIZON; no target table yet",
    )
    watcher = world.watcher(replicator, batch_size=1000)
    traffic = LiveTraffic(world.source, world.source_table, keys=items, rate_per_s=live_rate)
    traffic.start(3600)
    log("full-load", f"writers start: up to {live_rate:.0f} puts/updates/deletes per second, all along")

    execution = start(machine, {"pollSeconds": 1, "comment": "make demo"})
    shown, last_step = 0, ""
    sfn = boto3.client("stepfunctions")
    while True:
        running = sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
        entered = states_entered(execution, sfn)
        for name in entered[shown:]:
            # A polling step repeats ("Check the import" every few seconds): show each step once.
            if not name.startswith(("Is ", "Did ", "Do ", "Wait ", "Read the")) and name != last_step:
                log("full-load", f"step: {name}")
                last_step = name
        shown = len(entered)
        if not running:
            break
        time.sleep(0.2)
    result = wait(execution)
    writes_during_load = traffic.written
    if result["status"] != "SUCCEEDED":
        traffic.stop()
        watcher.drain()
        raise RuntimeError(f"full load {result['status']}: {result.get('error')}: {result.get('cause')}")
    report = result["output"]
    log(
        "full-load",
        f"exported {report['exportedItems']} items at T={report['exportTime']}, imported "
        f"{report['importedItems']} into {report['targetTable']} ({report['targetRegion']}, another "
        f"account); {writes_during_load} changes made meanwhile",
    )
    log(
        "handover",
        f"live replication enabled {report['handoverMinutesAfterExport']} min after T, "
        f"{report['handoverMinutesToSpare']} min before the stream retention would run out; it replays "
        "the stream from TRIM_HORIZON while the writers go on",
    )
    deadline = time.monotonic() + 600
    while not caught_up(watcher.poller.stats.batches, 1000) and time.monotonic() < deadline:
        time.sleep(0.2)
    tip_ms = time.time() * 1000
    log("live", f"caught up with the stream's tip; live replication for {live_seconds:.0f}s more")
    time.sleep(live_seconds)
    traffic.stop()
    watcher.drain()
    # The live lag is that of the changes made from now on: a batch after the tip may still carry
    # changes from the replay (made during the full load), whose age is the replay's, not the lag.
    live_lags = [lag for at, r in timed for lag in r.lags_ms if at - lag >= tip_ms]
    reports = [r for _, r in timed]
    records = sum(r.records for r in reports)
    source = scan_all(world.source, world.source_table)
    target = scan_all(world.target, world.target_table)
    mismatches = sum(1 for k in source.keys() | target.keys() if source.get(k) != target.get(k))
    figures = {
        "items_loaded": items,
        "exported_items": report["exportedItems"],
        "imported_items": report["importedItems"],
        "changes_during_full_load": writes_during_load,
        "changes_total": traffic.written,
        "stream_records_replicated": watcher.poller.stats.records_delivered,
        "changes_applied": sum(r.applied for r in reports),
        "coalesced": sum(r.coalesced for r in reports),
        "parked": sum(r.parked for r in reports),
        "write_requests_per_change": round(sum(r.write_requests for r in reports) / max(1, records), 3),
        "lag_p50_ms": percentile(live_lags, 50),
        "lag_p99_ms": percentile(live_lags, 99),
        "handover_minutes_to_spare": report["handoverMinutesToSpare"],
        "items_compared": len(source.keys() | target.keys()),
        "mismatches": mismatches,
        "seconds": round(time.monotonic() - started, 1),
    }
    log("compare", f"{figures['items_compared']} items compared, {mismatches} mismatches")
    return figures


if __name__ == "__main__":
    out = run_full_load(items=int(os.environ.get("DEMO_ITEMS", "2000")))
    print(out)
    sys.exit(0 if out["mismatches"] == 0 else 1)
