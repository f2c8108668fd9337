"""The demo's bidirectional phase: Beijing <-> Singapore, both writing, with conflicts, on moto.

`run_bidirectional()` builds both regions (tables, streams, side tables, Kinesis streams, peer keys in
SSM, and each region's stream_relay and relay_applier), runs scripts/load_items.py's load in both
regions at once (puts, updates, deletes, and keys written by both regions at the same moment) while
replication runs live, each event source polling on its own at Lambda's rates (`harness.live`), drains,
and compares the two tables item by item. By default the writers stamp nothing: the bridge owns the
versions (StampMode bridge); `stamp_mode="application"` has them stamp as the public sample does. It
prints progress and returns the figures: lag, conflicts and how last-writer-wins settled them, echoes
dropped, bytes per change on the wire, and mismatches.
Standalone: `python scripts/phase_bidirectional.py` (starts its own moto).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [p for p in (str(ROOT / "layers" / "bridge"), str(ROOT)) if p not in sys.path]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
logging.getLogger("werkzeug").setLevel(logging.ERROR)

from harness import moto_server  # noqa: E402
from harness.bidirectional import Delivery, TwoRegions  # noqa: E402
from harness.live import LivePolling  # noqa: E402
from harness.lww import canonical_item  # noqa: E402


def _load_items() -> Any:
    spec = importlib.util.spec_from_file_location("load_items", ROOT / "scripts" / "load_items.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("load_items", module)  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return sys.modules["load_items"]


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {'bidi':<9} {message}", flush=True)


def _percentile(values: list[int], q: int) -> float:
    if len(values) < 2:
        return float(values[0]) if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run_bidirectional(
    *,
    items: int = 1000,
    concurrency: int = 4,
    conflicts: float = 0.2,
    say: Callable[[str], None] = _say,
    seed: int = 7,
    stamp_mode: str = "bridge",
) -> dict[str, Any]:
    """Both regions write `items` items each (plus updates, deletes, conflicts); returns the figures."""
    load_items = _load_items()
    world = TwoRegions(
        [("pk", "S"), ("sk", "N")],
        name="orders-bidi",
        write_concurrency=8,
        delivery=Delivery(batch_size=1000),
        stamp_mode=stamp_mode,
    )
    for side in world.sides:
        assert side.kinesis_poller is not None and side.stream_poller is not None
        side.kinesis_poller.batch_size = 100  # the template's ApplierBatchSize; the relay takes 1000 stream records
        # The relay versions by the stream's second itself; the event keeps its fraction only so that the lag
        # figures below are to the millisecond (DynamoDB Streams give whole seconds).
        side.stream_poller.whole_seconds = False
    a, b = world.a, world.b
    say(f"Beijing {a.region} (aws-cn) <-> Singapore {b.region} (aws): tables, streams, side tables,")
    say("  Kinesis streams, peer keys in SSM; each region runs stream_relay and relay_applier")
    form = "none" if stamp_mode == "bridge" else "seconds"
    if stamp_mode == "bridge":
        say("  writers stamp nothing: the bridge versions every change (StampMode bridge)")
    else:
        say("  writers stamp as the public China <-> Global sample does: Decimal(time.time()), seconds")
    beijing = load_items.Region.stamping(a.ddb, a.table, a.tag, form)
    singapore = load_items.Region.stamping(b.ddb, b.table, b.tag, form)
    stats: dict[str, Any] = {}

    def load(name: str, local: Any, peer: Any, first: int) -> None:
        stats[name] = load_items.run_load(
            local,
            items=items,
            concurrency=concurrency,
            conflicts=conflicts,
            peer=peer,
            seed=seed + first,
            first=first,
            progress=lambda line: say(f"{name}: {line}"),
        )

    writers = [
        threading.Thread(target=load, args=("Beijing", beijing, singapore, 0)),
        threading.Thread(target=load, args=("Singapore", singapore, beijing, items)),
    ]
    started = time.monotonic()
    for writer in writers:
        writer.start()
    say(f"writing {items} items in each region, with updates, deletes and {conflicts:.0%} conflicts; replicating live")
    with LivePolling.of(world) as live:  # each event source on its own, at Lambda's rates
        while any(w.is_alive() for w in writers):
            time.sleep(5)
            applied = sum(r.applied for s in world.sides for r in s.applier_reports)
            say(f"live: {applied} changes applied across the border so far")
        for writer in writers:
            writer.join()
        say("writers done; replication catching up")
        deadline = time.monotonic() + 600
        while not live.all_idle() and time.monotonic() < deadline:
            time.sleep(0.5)
        live.stop()
    world.drain(max_polls=100_000)
    seconds = time.monotonic() - started
    items_a = {k: canonical_item(v) for k, v in a.data().items()}  # the bridge's own attribute is not data
    items_b = {k: canonical_item(v) for k, v in b.data().items()}
    mismatches = sum(1 for k in items_a.keys() | items_b.keys() if items_a.get(k) != items_b.get(k))

    relays = [r for s in world.sides for r in s.relay_reports]
    appliers = [r for s in world.sides for r in s.applier_reports]
    forwarded = sum(r.forwarded for r in relays)
    lags = [lag for r in appliers for lag in r.lags_ms]
    figures = {
        "writes": sum(s.figures()["writes"] for s in stats.values()),
        "conflicting_writes": sum(s.conflicts for s in stats.values()),
        "same_millisecond_ties": sum(s.ties for s in stats.values()),
        "changes_across_the_border": forwarded,
        "applied": sum(r.applied for r in appliers),
        "conflicts_resolved": sum(r.stale for r in appliers) + sum(r.reverted for r in relays),
        "duplicates_ignored": sum(r.duplicate for r in appliers),
        "echoes_dropped": sum(r.echoes_dropped for r in relays) + a.filtered_out + b.filtered_out,
        "echoes_dropped_by_filter": a.filtered_out + b.filtered_out,
        "local_writes_reverted": sum(r.reverted for r in relays),
        "bytes_per_change": round(sum(r.bytes_sent for r in relays) / max(1, forwarded), 1),
        "json_bytes_per_change": round(sum(r.raw_bytes for r in relays) / max(1, forwarded), 1),
        "put_records_calls_per_change": round(sum(r.put_calls for r in relays) / max(1, forwarded), 4),
        "kinesis_records_per_change": round(sum(r.kinesis_records for r in relays) / max(1, forwarded), 4),
        "lag_p50_ms": _percentile(lags, 50),
        "lag_p99_ms": _percentile(lags, 99),
        "parked": sum(r.parked for r in relays) + sum(r.parked for r in appliers),
        "items_compared": len(items_a.keys() | items_b.keys()),
        "mismatches": mismatches,
        "seconds": round(seconds, 1),
    }
    say(
        f"{figures['changes_across_the_border']} changes crossed; {figures['conflicts_resolved']} conflicts settled by "
        f"last-writer-wins; {figures['echoes_dropped']} echoes dropped; {figures['bytes_per_change']} bytes/change on "
        f"the wire; lag p50 {figures['lag_p50_ms']:.0f} ms, p99 {figures['lag_p99_ms']:.0f} ms; "
        f"{figures['mismatches']} mismatches in {figures['items_compared']} items"
    )
    return figures


def main() -> int:
    """Standalone: start moto, run the phase, print the figures; 0 when both regions are equal."""
    aws = moto_server.start()
    try:
        figures = run_bidirectional(items=int(os.environ.get("DEMO_BIDI_ITEMS", "1000")))
        for name, value in figures.items():
            print(f"  {name:<30} {value}")
        return 0 if figures["mismatches"] == 0 else 1
    finally:
        aws.stop()


if __name__ == "__main__":
    sys.exit(main())
