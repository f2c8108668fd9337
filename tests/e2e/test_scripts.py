"""The user-facing scripts, run as a user runs them: a fresh interpreter, its own moto server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )


def test_make_invoke_runs_one_function_with_one_event():
    out = run("scripts/invoke.py", "table_replicator", "events/ddb_stream_nested_binary.json")
    assert out.returncode == 0, out.stderr
    assert '"batchItemFailures": []' in out.stdout
    # the nested binary arrives in the target decoded once (shown again as base64 of the same bytes)
    assert '"B": "iVBORw0KGgo="' in out.stdout and '"B": "3q2+7w=="' in out.stdout


INVOKE_CASES = [
    ("full_load_control", "events/full_load_control_plan.json", '"valid": true'),
    ("backfill", "events/backfill_plan.json", '"valid": true'),
    ("verify", "events/verify_scan_segment.json", '"missing": 2'),
    ("stream_relay", "events/relay_local_insert_modify.json", '"batchItemFailures": []'),
    ("relay_applier", "events/kinesis_pack.json", '"batchItemFailures": []'),
    ("bucket_replicator", "events/s3_sqs_notifications.json", '"photos/2026/a b+c \\u00fc.jpg"'),
    ("bucket_backfill", "events/bucket_backfill_plan.json", '"valid": true'),
]


def test_every_function_has_a_make_invoke_case():
    functions = {p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").exists()}
    assert functions == {case[0] for case in INVOKE_CASES} | {"table_replicator"}


@pytest.mark.parametrize(("function", "event", "expected"), INVOKE_CASES)
def test_make_invoke_knows_every_function(function, event, expected):
    out = run("scripts/invoke.py", function, event)
    assert out.returncode == 0, out.stderr[-3000:]
    assert expected in out.stdout


def test_make_invoke_rejects_an_unknown_function():
    out = run("scripts/invoke.py", "nope", "events/ddb_stream_insert.json")
    assert out.returncode == 2 and "usage: make invoke" in out.stderr


def test_demo_runs_every_phase_and_ends_with_zero_differences(tmp_path):
    out = run(
        "scripts/demo.py",
        DEMO_ITEMS="300",
        DEMO_LIVE_SECONDS="1",
        DEMO_LIVE_RATE="30",
        DEMO_BIDI_ITEMS="60",
        DEMO_S3_OBJECTS="120",
        DEMO_S3_LIVE_SECONDS="1",
        DEMO_S3_MULTIPART="1",
        DEMO_ROLLBACK_SECONDS="1",
        DEMO_LOG_DIR=str(tmp_path),
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = out.stdout[out.stdout.index("ddb-bridge demo report") :]
    # one verdict line per phase, first
    verdicts = report.splitlines()[1:4]
    assert verdicts[0].startswith("  PASS  ONE-WAY") and "0 mismatches" in verdicts[0], report
    assert verdicts[1].startswith("  PASS  BIDIRECTIONAL") and "0 mismatches" in verdicts[1], report
    assert verdicts[2].startswith("  PASS  S3") and "0 differences" in verdicts[2], report
    assert "step: Import into the target account" in out.stdout and "step: Enable live replication" in out.stdout
    assert out.stdout.count("step: Check the import") <= 1  # a polling step is shown once
    assert "items loaded / exported / imported   300 / " in report
    # the screen holds progress and the report only: logs, metrics and warnings are in the log file
    assert '"_aws"' not in out.stdout and "Warning" not in out.stdout and out.stderr == ""
    body = report[: report.rindex("=" * 20)].splitlines()
    assert all(len(line) <= 120 for line in body), max(body, key=len)
    (log,) = tmp_path.glob("demo-*.log")
    assert f"logs and metrics: {log}" in out.stdout
    text = log.read_text()
    assert '"CloudWatchMetrics"' in text and '"ChangesApplied"' in text  # EMF metrics
    assert '"level":"INFO"' in text.replace(" ", "")  # the functions' JSON logs
    assert re.search(r"bucket compare differences +0 / 0 ", report), report
    # the one-way phase ends with the cut-over runbook, through the installed CLI, and a rollback rehearsal
    for command in ("status", "verify", "drain", "cutover-check"):
        assert f"ddb-bridge {command} --stack-name ddb-bridge-orders-" in out.stdout
    assert "verdict: PASS - safe to switch the writers to the target" in out.stdout
    assert "clean: yes" in out.stdout and "freeze time" in out.stdout
    assert re.search(r"cut-over gate +PASS", report), report
    assert re.search(r"rollback rehearsal +[1-9]\d* back, 0 mismatches", report), report
