"""The CLI without AWS: every command's help, usage errors, the gate's judgement, times and the progress bar."""

from __future__ import annotations

import io

import pytest

from ddb_bridge.ops import cli, gate
from ddb_bridge.ops.console import ProgressBar, bar, parse_time
from ddb_bridge.ops.verify_run import VerifyResult, progress_text, verify_input
from ddb_bridge.verify.progress import VerifyProgress

COMMANDS = ["status", "verify", "drain", "cutover-check", "replay", "resync", "recover", "bucket-compare"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help_with_the_exit_codes(command, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"] if command else ["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "exit codes:" in text and "4  timed out" in text
    if command:
        assert f"usage: ddb-bridge {command}" in text


def test_the_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert all(command in text for command in COMMANDS)


@pytest.mark.parametrize(
    "argv",
    [[], ["nope"], ["drain"], ["cutover-check", "--stack-name", "s", "--frozen-at", "yesterday"], ["status"]],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == cli.USAGE
    assert "usage: ddb-bridge" in capsys.readouterr().err


def test_replay_without_a_stack_or_a_queue_is_a_usage_error_that_says_what_to_give(capsys, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert cli.main(["replay", "--function", "f"]) == cli.USAGE
    assert "give --queue-url, or --stack-name" in capsys.readouterr().err


def test_times_on_the_command_line():
    assert parse_time("now", now=lambda: 1_700_000_000.25) == 1_700_000_000_250
    assert parse_time("1700000000") == 1_700_000_000_000
    assert parse_time("1700000000123") == 1_700_000_000_123
    assert (
        parse_time("2026-12-02T10:15:00Z")
        == parse_time("2026-12-02T11:15:00+01:00")
        == parse_time("2026-12-02T10:15:00")
    )
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday")


def test_progress_bar_redraws_on_a_terminal_and_prints_lines_elsewhere():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    progress = ProgressBar(tty)
    progress.update(0.5, "half")
    progress.finish(1.0, "done")
    assert tty.getvalue().startswith("\r[" + "#" * 14) and tty.getvalue().endswith("done\n")
    log, clock = io.StringIO(), iter([0.0, 0.0, 1.0, 10.0, 10.0])
    progress = ProgressBar(log, interval_s=5, clock=lambda: next(clock))
    progress.update(0.1, "a")  # printed
    progress.update(0.2, "b")  # too soon: not printed
    progress.update(0.3, "c")  # printed
    progress.finish(1.0, "d")
    assert [line.split("] ")[-1].strip() for line in log.getvalue().splitlines()] == ["10% a", "30% c", "100% d"]
    assert bar(None).startswith("[....")


def test_verify_input_carries_only_what_was_given():
    assert verify_input() == {}
    assert verify_input(repair=True, segments=4, ignore_attributes=["ttl"]) == {
        "repair": True,
        "segments": 4,
        "ignoreAttributes": ["ttl"],
    }


def test_verify_progress_text_from_the_workflows_progress():
    # while the segments are compared, differences are candidates (seen once)
    fraction, text = progress_text("RUNNING", VerifyProgress(8, 2, 1200, 1, 0, 2, 0, "target"))
    assert fraction == 0.25
    assert "phase target, segments 2/8" in text and "compared 1,200" in text and "candidates 3 (missing 1" in text
    assert "in flight" not in text
    # from the recheck on, confirmed differences, in flight and settled
    fraction, text = progress_text("RUNNING", VerifyProgress(8, 8, 1200, 1, 0, 0, 3, "recheck", settled=4))
    assert fraction == 1.0 and "differences 1 (missing 1" in text and "in flight 3, settled 4" in text
    text = progress_text("RUNNING", VerifyProgress(2, 1, 10, 1, 1, 0, 0, "repair", repaired=1, unrepaired=1))[1]
    assert "repaired 1, unrepaired 1" in text
    # right after the start, before the plan: no fraction yet
    assert progress_text("RUNNING", VerifyProgress(0, 0, 0, 0, 0, 0, 0, "source")) == (None, "running, planning")
    assert progress_text("RUNNING", None)[0] is None


# ---- the gate's judgement, condition by condition ------------------------------------------------------------
FROZEN = 1_800_000_000_000
CLEAN = {"clean": True, "startedAt": FROZEN + 60_000, "compared": 10, "equal": 10}


def facts(**changes) -> gate.Facts:
    good = gate.Facts(
        lag_ms=0,
        lag_detail="every stream record up to now is applied",
        parked=0,
        on_failure=0,
        running=[],
        frozen_at_ms=FROZEN,
        frozen_source="--frozen-at",
        verify=VerifyResult("arn:aws:states:us-east-1:1:execution:verify:v1", "SUCCEEDED", dict(CLEAN)),
    )
    for key, value in changes.items():
        setattr(good, key, value)
    return good


def failing(conditions) -> list[str]:
    return [c.name for c in conditions if not c.passed]


def test_the_gate_passes_when_every_condition_holds():
    conditions = gate.evaluate(facts(), max_lag_ms=1000)
    assert failing(conditions) == []
    assert gate.report(conditions)["pass"] is True
    assert gate.render("s", conditions)[-1].startswith("verdict: PASS")


@pytest.mark.parametrize(
    ("changes", "fails"),
    [
        ({"lag_ms": 1000}, "lag"),
        ({"lag_ms": None}, "lag"),
        ({"parked": 1}, "parking queue"),
        ({"on_failure": 2}, "on-failure queue"),
        ({"running": ["backfill b-1 (started 2026-12-02T10:00:00Z)"]}, "no full load or backfill running"),
        ({"frozen_at_ms": None}, "clean verify after the freeze"),
        ({"verify": None}, "clean verify after the freeze"),
        (
            {"verify": VerifyResult("arn:x:v2", "SUCCEEDED", {**CLEAN, "clean": False, "missing": 1})},
            "clean verify after the freeze",
        ),
        (
            {"verify": VerifyResult("arn:x:v3", "SUCCEEDED", {**CLEAN, "startedAt": FROZEN - 1})},
            "clean verify after the freeze",
        ),
    ],
)
def test_the_gate_fails_on_each_condition_alone(changes, fails):
    conditions = gate.evaluate(facts(**changes), max_lag_ms=1000)
    assert failing(conditions) == [fails]
    assert gate.report(conditions)["pass"] is False
    assert gate.render("s", conditions)[-1].startswith("verdict: FAIL")


def test_a_fact_that_could_not_be_read_fails_its_condition_and_says_why():
    conditions = gate.evaluate(facts(parked=None, unknown={"parking queue": "AccessDenied: no"}), max_lag_ms=1000)
    (condition,) = [c for c in conditions if not c.passed]
    assert condition.value == "unknown: AccessDenied: no"


def test_the_installable_package_pins_what_the_lambda_layer_pins():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    layer = {
        line.strip() for line in (root / "layers/bridge/requirements.txt").read_text().splitlines() if "==" in line
    }
    assert set(project["dependencies"]) == layer
    assert project["scripts"] == {"ddb-bridge": "ddb_bridge.ops.cli:main"}
