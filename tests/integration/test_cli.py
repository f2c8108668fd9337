"""`ddb-bridge` against a deployed stack on moto: stack outputs, status, drain, verify, the gate, resync, recover.

The verify behind the stack's `VerifyStateMachineArn` is the real workflow (statemachine/verify.asl.json
run by moto's Step Functions, functions/verify behind the Lambda bridge, reaching the target account by
the loader role): `harness.operator_world`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest

from ddb_bridge.ops import cli as cli_module
from ddb_bridge.ops.cli import ERROR, NOT_OK, OK, TIMED_OUT, main
from ddb_bridge.ops.console import ProgressBar
from harness import emf
from harness.lambda_bridge import BRIDGE
from harness.operator_world import (
    OperatedWorld,
    deploy_reverse,
    deploy_stack,
    long_running_machine,
    operated_world,
    verify_app,
)
from harness.verify import read_report
from harness.world import scan_all

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--settle-seconds", "0", "--poll-seconds", "0.1"]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(ow: OperatedWorld, n: int, prefix: str = "k") -> None:
    for i in range(n):
        ow.world.put({"pk": {"S": f"{prefix}{i}"}, "n": {"N": str(i)}})


def frozen_and_verified(ow: OperatedWorld, capsys) -> None:
    """Writes delivered, drained with the freeze recorded, then a clean verify: the gate's good state."""
    ow.poller.drain()
    assert cli(capsys, "drain", "--stack-name", ow.stack, "--frozen-at", "now", *FAST)[0] == OK
    assert cli(capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1")[0] == OK


def gate(ow: OperatedWorld, capsys, *extra: str) -> tuple[int, dict]:
    code, out, _ = cli(capsys, "cutover-check", "--stack-name", ow.stack, "--json", "--settle-seconds", "0", *extra)
    return code, json.loads(out)


def failed(report: dict) -> list[str]:
    return [c["name"] for c in report["conditions"] if not c["passed"]]


# ---- the stack's outputs ---------------------------------------------------------------------------------------
def test_outputs_come_from_the_root_and_else_from_its_nested_stacks(aws, capsys):
    ow = operated_world()
    from ddb_bridge.ops.stack import read_stack

    stack = read_stack(boto3.client("cloudformation"), ow.stack, "us-east-1")
    assert stack.get("ParkingQueueUrl") == ow.world.parking_url  # the root's own output
    assert stack.get("ReplicatorProgressTableName") == ow.progress_table  # only the nested progress stack has it
    assert stack.get("VerifyStateMachineArn") == ow.verify_machine  # only the nested verify app has it


def test_an_unknown_stack_or_a_missing_output_exits_3_and_says_what_to_do(aws, capsys):
    code, _, err = cli(capsys, "status", "--stack-name", "no-such-stack")
    assert code == ERROR and "no stack named no-such-stack" in err
    deploy_stack("bare", {"ParkingQueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/q"}, {})
    code, _, err = cli(capsys, "drain", "--stack-name", "bare")
    assert code == ERROR and "has no output ReplicatorProgressTableName" in err


# ---- status ----------------------------------------------------------------------------------------------------
def test_status_shows_lag_throughput_queues_last_verify_and_running_loads(aws, capsys):
    # GIVEN a replicated pair that applied 40 changes (its metrics reach CloudWatch as on AWS), one parked record,
    # a finished verify and a running backfill
    ow = operated_world()
    write(ow, 40)
    with emf.capture():
        ow.poller.drain()
    ow.world.sqs.send_message(QueueUrl=ow.world.parking_url, MessageBody=json.dumps({"reason": "ValidationException"}))
    assert cli(capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1")[0] == OK
    sfn = boto3.client("stepfunctions")
    sfn.start_execution(stateMachineArn=ow.backfill_machine, name="backfill-orders-1", input="{}")

    # WHEN the operator asks for the status, as text and as JSON
    code, text, _ = cli(capsys, "status", "--stack-name", ow.stack)
    code_json, out, _ = cli(capsys, "status", "--stack-name", ow.stack, "--json")

    # THEN every figure is there, from where AWS keeps it
    assert code == code_json == OK
    (status,) = json.loads(out)
    (replicator,) = status["functions"]
    assert replicator["role"] == "table_replicator" and replicator["service"] == f"{ow.stack}-table-replicator"
    assert replicator["lag_ms"] is not None and replicator["lag_ms"] >= 0  # ReplicationLag, from the EMF
    assert replicator["iterator_age_ms"] is not None  # IteratorAge, from the event source
    assert replicator["changes_per_second"] == round(40 / 300, 2)  # ChangesApplied over the 5-minute window
    assert status["last_batch"]["records"] > 0
    assert (status["parked"], status["on_failure"]) == (1, 0)
    assert status["verify"]["status"] == "SUCCEEDED" and status["verify"]["clean"] is True
    assert status["running"] == [status["running"][0]] and status["running"][0].startswith("backfill backfill-orders-1")
    assert status["event_source"]["state"] == "Enabled" and status["event_source"]["table"] == ow.world.source_table
    for expected in ("ReplicationLag max", "IteratorAge max", "changes/s       0.13", "parking queue     1 messages"):
        assert expected in text
    assert "clean" in text and "backfill backfill-orders-1" in text


def test_status_of_two_stacks_and_of_an_idle_one(aws, capsys):
    first, second = operated_world(), operated_world()
    code, text, _ = cli(capsys, "status", "--stack-name", first.stack, "--stack-name", second.stack)
    assert code == OK
    assert text.count("stack ddb-bridge-") == 2
    assert "no datapoints" in text and "last verify       none" in text


# ---- drain -----------------------------------------------------------------------------------------------------
def test_drain_waits_for_the_replicators_backlog_and_returns_once_it_is_applied(aws, capsys):
    # GIVEN 120 changes in the stream and a replicator that works through them slowly (batches of 10)
    ow = operated_world(batch_size=10)
    write(ow, 120)
    ow.feed(interval_s=0.2)
    started = time.monotonic()
    try:
        # WHEN the operator drains
        code, out, _ = cli(capsys, "drain", "--stack-name", ow.stack, "--timeout", "120", *FAST)
    finally:
        ow.stop_feeding()
    # THEN drain returned only once every change was applied: the target equals the source
    assert code == OK, out
    assert scan_all(ow.world.target, ow.world.target_table) == scan_all(ow.world.source, ow.world.source_table)
    assert "drained: the replicator has applied every change" in out and "(120 stream records)" in out
    assert "left (oldest" in out  # it saw the backlog while it waited
    assert time.monotonic() - started > 1.0  # 12 batches, 0.2 s apart


def test_drain_times_out_while_nothing_applies_then_succeeds_and_starts_from_its_checkpoint(aws, capsys):
    ow = operated_world()
    write(ow, 8)
    # WHEN the replicator does not run, drain gives up after its timeout, exit 4, naming what is left
    code, out, _ = cli(capsys, "drain", "--stack-name", ow.stack, "--timeout", "0.5", *FAST)
    assert code == TIMED_OUT
    assert "8 records written up to the cut are left" in out
    # AND once the records are applied it succeeds
    ow.poller.drain()
    code, out, _ = cli(capsys, "drain", "--stack-name", ow.stack, *FAST)
    assert code == OK and "(8 stream records)" in out
    # AND the next drain reads the stream only after the checkpoint the last one proved
    write(ow, 3, prefix="later")
    ow.poller.drain()
    code, out, _ = cli(capsys, "drain", "--stack-name", ow.stack, *FAST)
    assert code == OK and "(3 stream records)" in out


def test_drain_names_batches_in_the_on_failure_queue(aws, capsys):
    ow = operated_world()
    write(ow, 2)
    ow.world.sqs.send_message(QueueUrl=ow.on_failure_url, MessageBody=json.dumps({"DDBStreamBatchInfo": {}}))
    code, out, _ = cli(capsys, "drain", "--stack-name", ow.stack, "--timeout", "0.3", *FAST)
    assert code == TIMED_OUT and "the on-failure queue holds 1 batches" in out


# ---- verify ----------------------------------------------------------------------------------------------------
def report_line(out: str) -> str:
    """The verify's report (s3://bucket/key) as the CLI printed it."""
    return next(line.split("full report: ", 1)[1] for line in out.splitlines() if "full report: " in line)


def test_verify_exits_0_when_clean_and_1_with_the_differences_and_repair_converges(aws, capsys):
    ow = operated_world()
    write(ow, 10)
    ow.poller.drain()
    code, out, _ = cli(capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1")
    assert code == OK and "compared 10: 0 missing, 0 extra, 0 different" in out and "clean: yes" in out
    assert read_report(ow.world, report_line(out)) == []  # the report is always written; empty when clean
    # a verify resumed with the same verifyId is a new execution (names are unique), under the same id: it
    # resumes from its checkpoints and keeps its first start
    started = set()
    for _ in range(2):
        code, out, _ = cli(
            capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1", "--verify-id", "nightly"
        )
        assert code == OK and "verify nightly: compared 10" in out
        started.add(next(line for line in out.splitlines() if line.startswith("  started ")).split(",")[0])
    assert len(started) == 1
    # WHEN the target gains an item the source does not have, loses one, and holds one differently
    target, table = ow.world.target, ow.world.target_table
    target.put_item(TableName=table, Item={"pk": {"S": "only-in-target"}})
    target.delete_item(TableName=table, Key={"pk": {"S": "k3"}})
    target.put_item(TableName=table, Item={"pk": {"S": "k5"}, "n": {"N": "555"}})
    code, out, _ = cli(
        capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1", "--repair", "--recheck-delay-seconds", "0"
    )
    # THEN verify exits 1 and shows the keys, and its report in S3 names each one with what the repair did
    assert code == NOT_OK
    assert "1 missing, 1 extra, 1 different, 3 repaired" in out and "clean: NO" in out
    assert 'missing: {"pk":{"S":"k3"}}' in out and 'extra: {"pk":{"S":"only-in-target"}}' in out
    assert 'different: {"pk":{"S":"k5"}}' in out
    assert "(repair on)" in out and "verify again to see the tables clean" in out
    lines = read_report(ow.world, report_line(out))
    assert {(json.dumps(line["key"]), line["class"], line["repair"]) for line in lines} == {
        ('{"pk": {"S": "k3"}}', "missing", "repaired"),
        ('{"pk": {"S": "only-in-target"}}', "extra", "repaired"),
        ('{"pk": {"S": "k5"}}', "different", "repaired"),
    }
    sfn = boto3.client("stepfunctions")
    newest = max(sfn.list_executions(stateMachineArn=ow.verify_machine)["executions"], key=lambda e: e["startDate"])
    assert json.loads(sfn.describe_execution(executionArn=newest["executionArn"])["input"]) == {
        "repair": True,
        "recheckDelaySeconds": 0,
    }
    # AND the repair converged: the next verify is clean, the tables equal
    code, out, _ = cli(capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1")
    assert code == OK and "compared 10: 0 missing, 0 extra, 0 different" in out and "clean: yes" in out
    assert scan_all(target, table) == scan_all(ow.world.source, ow.world.source_table)


def test_verify_follows_the_workflows_progress_and_status_shows_a_running_verify(aws, capsys, monkeypatch):
    # GIVEN a target that lacks one of 30 items, and a verify whose target pass waits until the test has looked
    ow = operated_world()
    write(ow, 30)
    ow.poller.drain()
    ow.world.target.delete_item(TableName=ow.world.target_table, Key={"pk": {"S": "k3"}})
    release = threading.Event()

    def hold_the_target_pass(event: dict) -> None:
        if event.get("action") == "scan" and event.get("side") == "target":
            release.wait(60)

    shown: list[str] = []
    looked: dict[str, str] = {}

    class Terminal(ProgressBar):
        """Every redraw the operator's terminal would show; while the target pass waits, `status` is asked."""

        def update(self, fraction: float | None, text: str) -> None:
            shown.append(text)
            if "phase target" in text and not release.is_set():
                looked["verify"] = capsys.readouterr().out
                looked["status code"] = str(main(["status", "--stack-name", ow.stack, "--json"]))
                looked["status"] = capsys.readouterr().out
                release.set()

    monkeypatch.setattr(cli_module, "ProgressBar", Terminal)
    BRIDGE.hooks[f"{ow.stack}-verify"] = hold_the_target_pass
    try:
        # WHEN the operator runs verify
        code, out, _ = cli(
            capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.05", "--recheck-delay-seconds", "0"
        )
    finally:
        release.set()
        BRIDGE.hooks.pop(f"{ow.stack}-verify")
    # THEN it showed the workflow's own progress: the source pass done, one candidate, the target pass to go
    assert any("phase target, segments 0/1, compared 30, candidates 1 (missing 1, extra 0" in t for t in shown), shown
    # AND status showed the running verify with that progress
    assert looked["status code"] == "0"
    (status,) = json.loads(looked["status"])
    assert status["verify"]["status"] == "RUNNING" and "phase target" in status["verify"]["progress"]
    # AND the report it printed at the end is the real one
    assert code == NOT_OK and "compared 30: 1 missing, 0 extra, 0 different" in looked["verify"] + out
    assert [line["key"] for line in read_report(ow.world, report_line(out))] == [{"pk": {"S": "k3"}}]
    code, text, _ = cli(capsys, "status", "--stack-name", ow.stack)
    assert "SUCCEEDED NOT clean" in text and "compared 30: 1 missing" in text


def test_verify_that_fails_exits_3_and_one_still_running_at_the_timeout_exits_4(aws, capsys):
    running = long_running_machine("verify")
    deploy_stack("slow-verify", {}, {"Verify": verify_app({"VerifyStateMachineArn": running})})
    code, out, _ = cli(capsys, "verify", "--stack-name", "slow-verify", "--timeout", "0.3", "--poll-seconds", "0.1")
    assert code == TIMED_OUT and "is still running" in out
    ow = operated_world()
    write(ow, 5)
    ow.poller.drain()

    def unreachable_target(event: dict) -> None:
        if event.get("action") == "scan" and event.get("side") == "target":
            raise RuntimeError("the target account cannot be reached")

    # a verify whose target pass fails: exit 3, with the verifyId that resumes it
    BRIDGE.hooks[f"{ow.stack}-verify"] = unreachable_target
    try:
        code, out, _ = cli(capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1")
    finally:
        BRIDGE.hooks.pop(f"{ow.stack}-verify")
    assert code == ERROR and "verify did not finish" in out, out
    (verify_id,) = [line.split("--verify-id ")[1].split()[0] for line in out.splitlines() if "--verify-id " in line]
    # once the cause is gone, the same verifyId resumes it (the source pass is not done again) and it ends clean
    code, out, _ = cli(capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1", "--verify-id", verify_id)
    assert code == OK and f"verify {verify_id}: compared 5: 0 missing, 0 extra, 0 different" in out
    # bad input and a missing table fail at once, and there is nothing to resume
    code, out, _ = cli(
        capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1", "--throughput-percent", "150"
    )
    assert code == ERROR and "Invalid input: throughputPercent must be from 1 to 100" in out
    ow.world.source.delete_table(TableName=ow.world.source_table)  # the comparison cannot read the source
    code, out, _ = cli(capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1")
    assert code == ERROR and f"the source table {ow.world.source_table} does not exist" in out
    assert "--verify-id" not in out


# ---- the cut-over gate -------------------------------------------------------------------------------------------
def test_the_gate_passes_when_drained_frozen_and_verified_clean(aws, capsys):
    ow = operated_world()
    write(ow, 20)
    frozen_and_verified(ow, capsys)
    code, report = gate(ow, capsys)
    assert code == OK and report["pass"] is True and failed(report) == []
    code, text, _ = cli(capsys, "cutover-check", "--stack-name", ow.stack, "--settle-seconds", "0")
    assert code == OK and text.count("  PASS  ") == 5 and "verdict: PASS" in text


@pytest.mark.parametrize("condition", ["lag", "parking queue", "on-failure queue", "running", "verify"])
def test_the_gate_fails_on_each_condition_alone(aws, capsys, condition):
    # GIVEN the good state (drained, frozen, verified clean)
    ow = operated_world()
    write(ow, 10)
    frozen_and_verified(ow, capsys)
    extra: list[str] = []
    # WHEN exactly one thing goes wrong
    if condition == "lag":
        write(ow, 1, prefix="undelivered")  # a change the replicator has not applied, older than the limit
        time.sleep(0.15)
        extra = ["--max-lag-ms", "100"]
    elif condition == "parking queue":
        ow.world.sqs.send_message(QueueUrl=ow.world.parking_url, MessageBody="{}")
    elif condition == "on-failure queue":
        ow.world.sqs.send_message(QueueUrl=ow.on_failure_url, MessageBody="{}")
    elif condition == "running":
        boto3.client("stepfunctions").start_execution(stateMachineArn=ow.full_load_machine, name="fl-1", input="{}")
        condition = "no full load or backfill running"
    else:  # the writes were frozen again later: the clean verify is from before this freeze
        assert cli(capsys, "drain", "--stack-name", ow.stack, "--frozen-at", "now", *FAST)[0] == OK
        condition = "clean verify after the freeze"
    # THEN the gate fails on that condition only, exit 1
    code, report = gate(ow, capsys, *extra)
    assert (code, failed(report)) == (NOT_OK, [condition])


def test_the_gate_fails_without_a_freeze_time_and_with_a_verify_that_found_differences(aws, capsys):
    ow = operated_world()
    write(ow, 5)
    ow.poller.drain()
    assert cli(capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1")[0] == OK
    code, report = gate(ow, capsys)  # no --frozen-at, and drain never recorded one
    assert (code, failed(report)) == (NOT_OK, ["clean verify after the freeze"])
    assert "no freeze time" in report["conditions"][-1]["value"]
    frozen = str(int(time.time() * 1000) - 60_000)  # frozen a minute ago: the verify above started after it
    code, report = gate(ow, capsys, "--frozen-at", frozen)
    assert (code, failed(report)) == (OK, [])
    ow.world.target.put_item(TableName=ow.world.target_table, Item={"pk": {"S": "k1"}, "n": {"N": "999"}})
    assert (
        cli(capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1", "--recheck-delay-seconds", "0")[0]
        == NOT_OK
    )
    code, report = gate(ow, capsys, "--frozen-at", frozen)
    assert (code, failed(report)) == (NOT_OK, ["clean verify after the freeze"])
    assert "NOT clean" in report["conditions"][-1]["value"]


# ---- rollback: the same stack the other way round -----------------------------------------------------------------
def test_the_rollback_stack_carries_new_side_writes_back_and_drains_with_the_target_accounts_profile(
    aws, capsys, tmp_path, monkeypatch
):
    # GIVEN a pair that is drained, and the reverse stack deployed in the target account before the switch
    ow = operated_world()
    write(ow, 6)
    ow.poller.drain()
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    reverse = deploy_reverse(ow.world, credentials_file=tmp_path / "credentials")
    try:
        # WHEN the writers switch to the new side and change it
        target, table = ow.world.target, ow.world.target_table
        for i in range(8):
            target.put_item(TableName=table, Item={"pk": {"S": f"new-{i}"}, "n": {"N": str(i)}})
        target.put_item(TableName=table, Item={"pk": {"S": "k1"}, "n": {"N": "100"}})
        target.delete_item(TableName=table, Key={"pk": {"S": "k2"}})
        # AND the operator drains the rollback stack, with the target account's profile
        code, out, _ = cli(
            capsys,
            "drain",
            "--stack-name",
            reverse.stack,
            "--profile",
            reverse.profile,
            "--region",
            reverse.region,
            "--timeout",
            "60",
            *FAST,
        )
    finally:
        reverse.watcher.drain()
    # THEN every change on the new side reached the old one
    assert code == OK and "(10 stream records)" in out
    assert scan_all(ow.world.source, ow.world.source_table) == scan_all(target, table)
    # AND without that profile the stack is not found: it lives in the target account
    assert cli(capsys, "status", "--stack-name", reverse.stack, "--region", reverse.region)[0] == ERROR


# ---- resync through the stack ------------------------------------------------------------------------------------
def test_resync_finds_queue_table_and_replicator_in_the_stack(aws, capsys):
    ow = operated_world()
    ow.world.put({"pk": {"S": "parked-key"}, "v": {"N": "2"}})
    record = {
        "eventID": "e1",
        "eventName": "MODIFY",
        "eventSourceARN": ow.world.stream_arn,
        "dynamodb": {"Keys": {"pk": {"S": "parked-key"}}, "SequenceNumber": "1"},
    }
    body = {"reason": "ValidationException", "source": "table_replicator", "record": record}
    ow.world.sqs.send_message(QueueUrl=ow.world.parking_url, MessageBody=json.dumps(body))
    code, out, _ = cli(capsys, "resync", "--stack-name", ow.stack)
    tally = json.loads(out[out.index('{\n  "seen"') :])  # the function's own logs come first (it runs in-process)
    assert code == OK and (tally["replayed"], tally["failed"]) == (1, 0)
    assert set(scan_all(ow.world.target, ow.world.target_table)) == {'{"pk":{"S":"parked-key"}}'}


def test_recover_applies_the_batches_that_exhausted_their_retries_with_the_stacks_queue_and_table(aws, capsys):
    # GIVEN a replicator that failed every retry of a batch (its pointer is in the on-failure queue)
    ow = operated_world()
    write(ow, 4)
    ow.poller.max_retries = 1
    healthy = ow.poller.handler
    ow.poller.handler = lambda event: (_ for _ in ()).throw(RuntimeError("target unreachable"))
    ow.poller.drain()
    assert scan_all(ow.world.target, ow.world.target_table) == {}
    # AND meanwhile one key changed at the source
    ow.world.put({"pk": {"S": "k1"}, "n": {"N": "100"}})
    ow.poller.handler = healthy
    # WHEN the cause is fixed and the operator recovers, naming only the stack
    code, out, _ = cli(capsys, "recover", "--stack-name", ow.stack)
    # THEN the range was re-read and each key's current source state applied; the queue is empty
    tally = json.loads(out[out.index('{\n  "seen"') :])
    assert code == OK and (tally["recovered"], tally["expired"], tally["failed"]) == (1, 0, 0)
    ow.poller.drain()  # the later change of k1, delivered live
    assert scan_all(ow.world.target, ow.world.target_table) == scan_all(ow.world.source, ow.world.source_table)
    # AND the recovered records count as applied: drain passes, the on-failure queue is empty
    code, out, _ = cli(capsys, "drain", "--stack-name", ow.stack, *FAST)
    assert code == OK and "(5 stream records)" in out
    code, out, _ = cli(capsys, "status", "--stack-name", ow.stack, "--json")
    assert json.loads(out[out.index("[\n") :])[0]["on_failure"] == 0


# ---- the installed console script --------------------------------------------------------------------------------
def test_the_console_script_is_installed_and_talks_to_aws(aws):
    script = Path(sys.executable).parent / "ddb-bridge"
    assert script.exists(), "run `make test` (or pip install -e .): the Makefile installs the console script"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "bridge"), str(ROOT)])}
    shown = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert shown.returncode == 0 and "cutover-check" in shown.stdout
    ow = operated_world()
    result = subprocess.run(
        [str(script), "status", "--stack-name", ow.stack, "--json"], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["stack"] == ow.stack
