"""The demo's full-load phase (scripts/phase_fullload.py), run as the demo runs it, on the test's moto."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def test_full_load_phase_hands_over_with_zero_mismatches(aws: Any) -> None:
    spec = importlib.util.spec_from_file_location("phase_fullload", ROOT / "scripts" / "phase_fullload.py")
    assert spec and spec.loader
    phase = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(phase)
    lines: list[str] = []

    figures = phase.run_full_load(items=150, live_rate=40, live_seconds=0.5, log=lambda p, m: lines.append(m))

    assert figures["mismatches"] == 0
    assert figures["exported_items"] == figures["imported_items"] >= 150
    assert figures["changes_during_full_load"] > 0  # writes kept flowing during the load
    assert figures["stream_records_replicated"] >= 150 + figures["changes_during_full_load"]
    assert any(line.startswith("step: Enable live replication") for line in lines)
