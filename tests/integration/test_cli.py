"""`ddb-bridge` against a deployed stand-in stack on moto: stack outputs, status, drain, verify, the gate, resync.

The verify workflow is a stand-in (harness/verify_standin.py) until the verify branch is merged: a state
machine returning the contract's output shape from a real item-by-item comparison. Switching to the real
workflow changes `harness.operator_world.operated_world` only; these tests stay as they are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from ddb_bridge.ops.cli import ERROR, NOT_OK, OK, TIMED_OUT, main
from harness import emf
from harness.operator_world import (
    VERIFY_APP,
    OperatedWorld,
    deploy_reverse,
    deploy_stack,
    long_running_machine,
    operated_world,
)
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
def test_verify_exits_0_when_clean_and_1_with_the_differences_when_not(aws, capsys):
    ow = operated_world()
    write(ow, 10)
    ow.poller.drain()
    code, out, _ = cli(capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1")
    assert code == OK and "compared 10: 0 missing, 0 extra, 0 different" in out and "clean: yes" in out
    # a verify resumed with the same verifyId is a new execution (names are unique), under the same id
    for _ in range(2):
        code, out, _ = cli(
            capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1", "--verify-id", "nightly"
        )
        assert code == OK and "verify nightly: compared 10" in out
    # WHEN the target gains an item the source does not have, and loses one
    ow.world.target.put_item(TableName=ow.world.target_table, Item={"pk": {"S": "only-in-target"}})
    ow.world.target.delete_item(TableName=ow.world.target_table, Key={"pk": {"S": "k3"}})
    code, out, _ = cli(
        capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1", "--repair", "--recheck-delay-seconds", "0"
    )
    # THEN verify exits 1 and shows the keys
    assert code == NOT_OK
    assert "1 missing, 1 extra" in out and "clean: NO" in out
    assert 'missing: {"pk":{"S":"k3"}}' in out and 'extra: {"pk":{"S":"only-in-target"}}' in out
    assert "(repair on)" in out
    sfn = boto3.client("stepfunctions")
    newest = max(sfn.list_executions(stateMachineArn=ow.verify_machine)["executions"], key=lambda e: e["startDate"])
    assert json.loads(sfn.describe_execution(executionArn=newest["executionArn"])["input"]) == {
        "repair": True,
        "recheckDelaySeconds": 0,
    }


def test_verify_that_fails_exits_3_and_one_still_running_at_the_timeout_exits_4(aws, capsys):
    running = long_running_machine("verify")
    deploy_stack("slow-verify", {}, {"Verify": (VERIFY_APP, {"VerifyStateMachineArn": running})})
    code, out, _ = cli(capsys, "verify", "--stack-name", "slow-verify", "--timeout", "0.3", "--poll-seconds", "0.1")
    assert code == TIMED_OUT and "is still running" in out
    ow = operated_world()
    ow.world.source.delete_table(TableName=ow.world.source_table)  # the comparison cannot read the source
    code, out, _ = cli(capsys, "verify", "--stack-name", ow.stack, "--poll-seconds", "0.1")
    assert code == ERROR and "verify did not finish" in out


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
