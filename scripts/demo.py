"""`make demo`: a local end-to-end migration on moto, from one account and region to another.

Phase 1 loads 10,000 items of every attribute type into the source. Phase 2 replicates them and live
puts, updates and deletes through table_replicator while the writes keep flowing, showing progress.
Then the tables are compared item by item; the exit code is non-zero on any mismatch.
"""

from __future__ import annotations

import logging
import os
import statistics
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
from harness.lambdas import LocalFunction  # noqa: E402
from harness.streams import StreamPoller  # noqa: E402
from harness.workload import LiveTraffic, batch_put, every_type_item  # noqa: E402
from harness.world import OneWayWorld, one_way_world, scan_all  # noqa: E402

ITEMS = int(os.environ.get("DEMO_ITEMS", "10000"))
LIVE_SECONDS = float(os.environ.get("DEMO_LIVE_SECONDS", "15"))
LIVE_RATE = float(os.environ.get("DEMO_LIVE_RATE", "100"))


def say(phase: str, message: str) -> None:
    """One progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {phase:<9} {message}", flush=True)


def percentile(values: list[int], q: float) -> float:
    """The q-th percentile (0-100) of values, 0 when empty."""
    if not values:
        return 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def compare(world: OneWayWorld) -> tuple[int, int]:
    """Items compared and mismatches (missing, extra or different), item by item."""
    source = scan_all(world.source, world.source_table)
    target = scan_all(world.target, world.target_table)
    mismatches = sum(1 for k in source.keys() | target.keys() if source.get(k) != target.get(k))
    return len(source.keys() | target.keys()), mismatches


def live_replication(world: OneWayWorld) -> dict[str, Any]:
    """Replicate the backlog and live traffic until both are drained; returns the figures."""
    fn = LocalFunction("table_replicator", world.replicator_env(POWERTOOLS_SERVICE_NAME="demo-replicator"))
    reports: list[Any] = []
    fn.layer_module("ddb_bridge.replicator").report_listeners.append(reports.append)
    poller = StreamPoller(world.streams, world.stream_arn, fn.invoke, batch_size=1000)
    traffic = LiveTraffic(world.source, world.source_table, keys=ITEMS, rate_per_s=LIVE_RATE)
    say(
        "live",
        f"writers start: up to {LIVE_RATE:.0f} puts/updates/deletes per second, until {LIVE_SECONDS:.0f}s "
        f"after the backlog is replicated",
    )
    traffic.start(3600)
    started = time.monotonic()
    last_print = 0.0
    idle = 0
    backlog_done_at: int | None = None  # lag counts only changes made while replication ran
    stop_writers_at = float("inf")
    while traffic.running() or idle < 2:
        taken = poller.poll_once()
        idle = 0 if taken or traffic.running() else idle + 1
        if backlog_done_at is None and poller.stats.records_delivered >= ITEMS:
            backlog_done_at = len(reports)
            stop_writers_at = time.monotonic() + LIVE_SECONDS
            say("live", f"backlog of {ITEMS} loaded items replicated after {time.monotonic() - started:.1f}s")
        if backlog_done_at is not None and traffic.running() and time.monotonic() > stop_writers_at:
            traffic.stop()
            say("live", "writers stopped; draining the stream")
        if time.monotonic() - last_print >= 1.0 or (idle == 2):
            last_print = time.monotonic()
            lags = [lag for r in reports[backlog_done_at or len(reports) :] for lag in r.lags_ms]
            say(
                "live",
                f"changes written {ITEMS + traffic.written:>6} | stream records replicated "
                f"{poller.stats.records_delivered:>6} | writes to target "
                f"{sum(r.write_requests for r in reports):>5} | lag p50 {percentile(lags, 50):.0f} ms",
            )
        if not taken:
            time.sleep(0.05)
    traffic.stop()
    records = sum(r.records for r in reports)
    lags = [lag for r in reports[backlog_done_at or 0 :] for lag in r.lags_ms]
    return {
        "records": records,
        "applied": sum(r.applied for r in reports),
        "coalesced": sum(r.coalesced for r in reports),
        "parked": sum(r.parked for r in reports),
        "retries": poller.stats.retries,
        "write_requests": sum(r.write_requests for r in reports),
        "lag_p50_ms": percentile(lags, 50),
        "lag_p99_ms": percentile(lags, 99),
        "seconds": time.monotonic() - started,
        "live_changes": traffic.written,
    }


def main() -> int:
    """Run the demo; 0 when the target equals the source."""
    say("setup", "starting moto as an HTTP server on loopback")
    aws = moto_server.start()
    try:
        world = one_way_world(name="orders")
        say(
            "setup",
            f"source {world.source_table} in account {moto_server.SOURCE_ACCOUNT}/us-east-1 (stream on); "
            f"target in account {moto_server.TARGET_ACCOUNT}/eu-west-1, reached by AssumeRole + ExternalId",
        )
        say("load", f"writing {ITEMS} items of every attribute type into the source")
        started = time.monotonic()
        for start in range(0, ITEMS, 2000):
            batch_put(
                world.source, world.source_table, [every_type_item(i) for i in range(start, min(ITEMS, start + 2000))]
            )
            say("load", f"{min(ITEMS, start + 2000):>6}/{ITEMS} items")
        say("load", f"done in {time.monotonic() - started:.1f}s")

        figures = live_replication(world)
        compared, mismatches = compare(world)
        print()
        print("=" * 72)
        print("ddb-bridge demo report (one-way, cross-account + cross-region)")
        print(
            f"  stream records replicated : {figures['records']}  ({figures['live_changes']} live changes "
            f"during replication)"
        )
        print(
            f"  changes applied           : {figures['applied']}  (coalesced away: {figures['coalesced']}, "
            f"parked: {figures['parked']}, retried batches: {figures['retries']})"
        )
        print(f"  write requests per change : {figures['write_requests'] / max(1, figures['records']):.3f}")
        print(f"  lag of live changes       : p50 {figures['lag_p50_ms']:.0f} ms, p99 {figures['lag_p99_ms']:.0f} ms")
        print(f"  items compared            : {compared}")
        print(f"  mismatches                : {mismatches}")
        print("=" * 72)
        return 0 if mismatches == 0 else 1
    finally:
        aws.stop()


if __name__ == "__main__":
    sys.exit(main())
