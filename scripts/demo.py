"""`make demo`: the whole migration story, locally on moto, with progress and a final report.

Phase 1, one-way across accounts and regions: 10,000 items of every attribute type in the source; the
full-load state machine exports at time T and imports into a new table in the target account while
writes keep flowing; live replication takes over from the stream with no gap, catches up, and runs
on with the writers. Phase 2, China <-> Global: both regions write, with same-item conflicts, through
the Kinesis relay. Each phase ends with an item-by-item comparison; any mismatch makes the exit
code non-zero.

The screen shows progress and the report; everything else the functions print (their JSON logs and
the CloudWatch metrics they emit as EMF lines) goes to a log file whose path is printed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "bridge"), str(ROOT)]
os.environ["POWERTOOLS_LOG_LEVEL"] = os.environ.get("DEMO_LOG_LEVEL", "INFO")  # the log file gets INFO
os.environ["POWERTOOLS_METRICS_DISABLED"] = "false"  # the metrics go to the log file with the logs
logging.getLogger("werkzeug").setLevel(logging.ERROR)

from harness import moto_server  # noqa: E402

ITEMS = int(os.environ.get("DEMO_ITEMS", "10000"))
LIVE_SECONDS = float(os.environ.get("DEMO_LIVE_SECONDS", "10"))
LIVE_RATE = float(os.environ.get("DEMO_LIVE_RATE", "50"))
BIDI_ITEMS = int(os.environ.get("DEMO_BIDI_ITEMS", "1000"))
LOG_DIR = Path(os.environ.get("DEMO_LOG_DIR", str(ROOT / ".demo")))
WIDTH = 100


class Screen:
    """The terminal for progress and the report; the functions' logs and metrics go to a file.

    Powertools writes JSON logs and EMF metric lines to the process's stdout, and libraries warn on
    stderr: both file descriptors are pointed at the log file, and only `say`/`show` reach the terminal.
    """

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        self._terminal = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        self._log = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the demo
        os.dup2(self._log.fileno(), 1)
        os.dup2(self._log.fileno(), 2)
        logging.captureWarnings(True)
        warnings.simplefilter("default")

    def show(self, text: str = "") -> None:
        """A line on the terminal (and in the log, for the record)."""
        self._terminal.write(text + "\n")
        self._log.write(text + "\n")

    def say(self, phase: str, message: str) -> None:
        """One progress line."""
        self.show(f"[{time.strftime('%H:%M:%S')}] {phase:<9} {message}")


@dataclass
class Verdict:
    """What one phase proved: PASS/FAIL and why, then each figure with what it means."""

    title: str
    ok: bool
    why: str
    rows: list[tuple[str, Any, str]] = field(default_factory=list)


def phase(name: str) -> ModuleType:
    """scripts/phase_<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"phase_{name}", ROOT / "scripts" / f"phase_{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_way_verdict(f: dict[str, Any]) -> Verdict:
    """Phase 1's verdict: the target equals the source after the full load and live replication."""
    ok = f["mismatches"] == 0 and f["parked"] == 0 and f["imported_items"] == f["exported_items"]
    why = (
        f"target equals source: {f['items_compared']} items compared, 0 mismatches, nothing parked"
        if ok
        else f"{f['mismatches']} items differ, {f['parked']} records parked, "
        f"{f['imported_items']} of {f['exported_items']} exported items imported"
    )
    return Verdict(
        "ONE-WAY: another account and region, full load then live replication",
        ok,
        why,
        [
            (
                "items loaded / exported / imported",
                f"{f['items_loaded']} / {f['exported_items']} / {f['imported_items']}",
                "export at T -> new table in the target account",
            ),
            ("changes during the full load", f["changes_during_full_load"], "writes made while export+import ran"),
            ("live changes in all", f["changes_total"], "writes from the full load's start to the end"),
            (
                "stream records replicated",
                f["stream_records_replicated"],
                "replayed from before T: no gap at the handover",
            ),
            (
                "changes applied",
                f"{f['changes_applied']} ({f['coalesced']} coalesced)",
                "coalesced: superseded in the same batch",
            ),
            ("write requests per change", f["write_requests_per_change"], "BatchWriteItem takes 25 keys a request"),
            (
                "live lag p50 / p99",
                f"{f['lag_p50_ms']:.0f} / {f['lag_p99_ms']:.0f} ms",
                "from the source write to the target write",
            ),
            (
                "handover margin",
                f"{f['handover_minutes_to_spare']} min",
                "time left before the stream's 24 h retention",
            ),
            ("mismatches", f["mismatches"], "items that differ at the end"),
        ],
    )


def bidi_verdict(f: dict[str, Any]) -> Verdict:
    """Phase 2's verdict: both regions converge to the state last-writer-wins picks."""
    ok = f["mismatches"] == 0 and f["parked"] == 0
    why = (
        f"both regions hold the same {f['items_compared']} items, 0 mismatches, nothing parked"
        if ok
        else f"{f['mismatches']} items differ between the regions, {f['parked']} changes parked"
    )
    return Verdict(
        "BIDIRECTIONAL: Beijing (aws-cn) <-> Singapore (aws), both writing",
        ok,
        why,
        [
            ("changes across the border", f["changes_across_the_border"], "local changes relayed to the peer"),
            (
                "conflicts settled",
                f"{f['conflicts_resolved']} ({f['same_millisecond_ties']} same-ms ties)",
                "same item written on both sides: newer one wins",
            ),
            ("echoes dropped", f["echoes_dropped"], "replicated writes not sent back (no loops)"),
            (
                "bytes per change on the wire",
                f"{f['bytes_per_change']} (plain JSON {f['json_bytes_per_change']})",
                "packed, compressed",
            ),
            (
                "lag p50 / p99",
                f"{f['lag_p50_ms']:.0f} / {f['lag_p99_ms']:.0f} ms",
                "write in one region -> write in the other",
            ),
            ("mismatches", f["mismatches"], "items that differ at the end"),
        ],
    )


def report(screen: Screen, verdicts: list[Verdict]) -> None:
    """The verdict lines first, then each phase's figures with what they mean."""
    show = screen.show
    show()
    show("=" * WIDTH)
    show("ddb-bridge demo report")
    for v in verdicts:
        show(f"  {'PASS' if v.ok else 'FAIL'}  {v.title.split(':')[0]:<14} {v.why}")
    for v in verdicts:
        show("-" * WIDTH)
        show(v.title)
        for label, value, meaning in v.rows:
            show(f"  {label:<36} {value!s:<25} {meaning}")
    show("=" * WIDTH)


def main() -> int:
    """Run both phases on one local moto; 0 when every phase passed."""
    log_path = LOG_DIR / f"demo-{time.strftime('%Y%m%d-%H%M%S')}.log"
    screen = Screen(log_path)
    say = screen.say
    say("setup", f"logs and metrics of the functions go to {log_path}")
    say("setup", "starting moto as an HTTP server on loopback (nothing here reaches AWS)")
    aws = moto_server.start()
    steps: list[tuple[str, Callable[[], Verdict]]] = [
        (
            f"one-way migration of {ITEMS} items: full load while writes flow, then live replication",
            lambda: one_way_verdict(
                phase("fullload").run_full_load(items=ITEMS, live_rate=LIVE_RATE, live_seconds=LIVE_SECONDS, log=say)
            ),
        ),
        (
            "China <-> Global, both sides writing, through the Kinesis relay",
            lambda: bidi_verdict(
                phase("bidirectional").run_bidirectional(items=BIDI_ITEMS, say=lambda m: say("bidi", m))
            ),
        ),
    ]
    verdicts: list[Verdict] = []
    try:
        for number, (title, run) in enumerate(steps, start=1):
            if number > 1:
                aws.reset()
            say(f"phase {number}", title)
            verdicts.append(run())
        report(screen, verdicts)
        aws.reset()
        say("phase 3", "S3: backfill while live puts/deletes flow, into another account and the other partition")
        s3 = phase("s3").run(lambda m: say("s3", m))
        s3_ok = all(run["differences"] == 0 for run in s3.values())
        say("s3", f"bucket compare differences: {[run['differences'] for run in s3.values()]} (account, partition)")
        say("done", f"logs and metrics: {log_path}")
        return 0 if all(v.ok for v in verdicts) and s3_ok else 1
    finally:
        aws.stop()


if __name__ == "__main__":
    sys.exit(main())
