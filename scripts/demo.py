"""`make demo`: the whole migration story, locally on moto, with progress and a final report.

Phase 1, one-way across accounts and regions: 10,000 items of every attribute type in the source; the
full-load state machine exports at time T and imports into a new table in the target account while
writes keep flowing; live replication takes over from the stream with no gap, catches up, and runs
on with the writers; then the cut-over runbook with the `ddb-bridge` CLI (verify, freeze, drain, verify,
cutover-check, switch) and a rollback rehearsal through the reverse stack. Phase 2, China <-> Global:
both regions write, with same-item conflicts, through the Kinesis relay. Each phase ends with an
item-by-item comparison; any mismatch (or a failed cut-over step) makes the exit code non-zero.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "bridge"), str(ROOT)]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
logging.getLogger("werkzeug").setLevel(logging.ERROR)

from harness import moto_server  # noqa: E402

ITEMS = int(os.environ.get("DEMO_ITEMS", "10000"))
LIVE_SECONDS = float(os.environ.get("DEMO_LIVE_SECONDS", "10"))
LIVE_RATE = float(os.environ.get("DEMO_LIVE_RATE", "50"))
BIDI_ITEMS = int(os.environ.get("DEMO_BIDI_ITEMS", "1000"))


def say(phase: str, message: str) -> None:
    """One progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {phase:<9} {message}", flush=True)


def phase(name: str) -> ModuleType:
    """scripts/phase_<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"phase_{name}", ROOT / "scripts" / f"phase_{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report(one_way: dict[str, Any], bidi: dict[str, Any]) -> None:
    """The final report."""
    rows = [
        ("ONE-WAY (cross-account + cross-region)", None),
        (
            "items loaded, exported, imported",
            f"{one_way['items_loaded']}, {one_way['exported_items']}, {one_way['imported_items']}",
        ),
        ("changes made during the full load", one_way["changes_during_full_load"]),
        ("live changes in all", one_way["changes_total"]),
        ("stream records replicated", one_way["stream_records_replicated"]),
        (
            "changes applied",
            f"{one_way['changes_applied']} (coalesced away {one_way['coalesced']}, parked {one_way['parked']})",
        ),
        ("write requests per change", one_way["write_requests_per_change"]),
        ("live lag", f"p50 {one_way['lag_p50_ms']:.0f} ms, p99 {one_way['lag_p99_ms']:.0f} ms"),
        ("handover margin", f"{one_way['handover_minutes_to_spare']} min before stream retention ends"),
        ("items compared", one_way["items_compared"]),
        ("mismatches", one_way["mismatches"]),
        ("verify after the freeze", one_way["cutover"]["verify_after_freeze"]),
        ("cut-over gate (cutover-check)", one_way["cutover"]["gate"]),
        (
            "rollback rehearsal",
            f"{one_way['cutover']['rollback_changes']} changes on the new side flowed back, "
            f"{one_way['cutover']['rollback_mismatches']} mismatches",
        ),
        ("BIDIRECTIONAL (Beijing <-> Singapore)", None),
        ("changes across the border", bidi["changes_across_the_border"]),
        (
            "conflicts settled (last writer wins)",
            f"{bidi['conflicts_resolved']} ({bidi['same_millisecond_ties']} same-millisecond ties)",
        ),
        ("echoes dropped", bidi["echoes_dropped"]),
        ("bytes per change on the wire", f"{bidi['bytes_per_change']} (plain JSON: {bidi['json_bytes_per_change']})"),
        ("lag", f"p50 {bidi['lag_p50_ms']:.0f} ms, p99 {bidi['lag_p99_ms']:.0f} ms"),
        ("items compared", bidi["items_compared"]),
        ("mismatches", bidi["mismatches"]),
    ]
    print()
    print("=" * 78)
    print("ddb-bridge demo report")
    for label, value in rows:
        print(f"{label}" if value is None else f"  {label:<38}: {value}")
    print("=" * 78)


def main() -> int:
    """Run both phases on one local moto; 0 when every comparison found no mismatch."""
    say("setup", "starting moto as an HTTP server on loopback (nothing here reaches AWS)")
    aws = moto_server.start()
    try:
        say("phase 1", f"one-way migration of {ITEMS} items: full load while writes flow, then live replication")
        one_way = phase("fullload").run_full_load(
            items=ITEMS, live_rate=LIVE_RATE, live_seconds=LIVE_SECONDS, log=say, cutover=phase("cutover")
        )
        aws.reset()
        say("phase 2", "China <-> Global, both sides writing, through the Kinesis relay")
        bidi = phase("bidirectional").run_bidirectional(items=BIDI_ITEMS, say=lambda m: say("bidi", m))
        report(one_way, bidi)
        return 0 if one_way["mismatches"] == 0 and one_way["cutover"]["ok"] and bidi["mismatches"] == 0 else 1
    finally:
        aws.stop()


if __name__ == "__main__":
    sys.exit(main())
