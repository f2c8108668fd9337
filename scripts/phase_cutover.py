"""The demo's cut-over: docs/runbook.md, step by step, on the one-way world the full-load phase leaves.

`deploy_operations(world, full_load_machine)` runs before the replicator is deployed: the stack the operator's
CLI reads (its queues, the replicator's progress table, the verify workflow), and the functions' metrics into
moto's CloudWatch. `run_cutover(...)` runs once live replication has caught up, with the writers still going:
status, verify, freeze the writes, drain, verify, cutover-check, deploy the reverse stack, switch the writers,
rehearse a rollback (changes on the new side flow back to the old table, drained and compared), clean up.
Every operator step is the installed `ddb-bridge` command, printed before it runs. The verify workflow is
statemachine/verify.asl.json as `harness/verify.py` deploys it (Step Functions in moto runs the ASL, its
Lambda tasks run functions/verify), reaching the target account through the loader role.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "bridge"), str(ROOT)]

from ddb_bridge.ops import verify_run  # noqa: E402
from harness import emf  # noqa: E402
from harness.load_world import LoadWorld  # noqa: E402
from harness.operator_world import deploy_reverse, deploy_stack, deploy_verify, verify_app  # noqa: E402
from harness.workflows import ReplicationWatcher  # noqa: E402
from harness.workload import LiveTraffic  # noqa: E402
from harness.world import scan_all  # noqa: E402

Log = Callable[[str, str], None]
ROLLBACK_SECONDS = float(os.environ.get("DEMO_ROLLBACK_SECONDS", "3"))
# A difference seen while the writers write is read again after this delay: above the demo's replication lag
# (p99 well under a second here, a few seconds while the verify shares moto's one process), so only real ones count.
RECHECK_WHILE_WRITING_S = 5


class Operations:
    """What the operator's CLI reads, deployed beside the one-way pair (a plain class: this file is loaded by path)."""

    def __init__(
        self,
        stack: str,
        replicator_env: dict[str, str],
        verify_machine: str,
        workdir: Path,
        metrics: emf.Capture,
        cleanup: contextlib.ExitStack,
    ) -> None:
        self.stack = stack
        self.metrics = metrics
        self.replicator_env = replicator_env
        self.verify_machine = verify_machine
        self.workdir = workdir
        self._cleanup = cleanup

    def close(self) -> None:
        """Stop sending metrics to moto; remove the temporary credentials file."""
        self._cleanup.close()


def deploy_operations(world: LoadWorld, full_load_machine: str) -> Operations:
    """The stack (root, templates/progress.yaml nested, the verify workflow), before the replicator exists."""
    cleanup = contextlib.ExitStack()
    metrics = cleanup.enter_context(emf.capture())  # the functions' EMF -> CloudWatch, as on AWS
    workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="ddb-bridge-demo-")))
    on_failure = world.sqs.create_queue(QueueName=f"{world.name}-on-failure")["QueueUrl"]
    stack = f"ddb-bridge-{world.name}"
    verify = deploy_verify(world, stack)
    nested = deploy_stack(
        stack,
        {
            "ParkingQueueUrl": world.parking_url,
            "OnFailureQueueUrl": on_failure,
            "TableReplicatorFunctionName": "table_replicator",
            "FullLoadStateMachineArn": full_load_machine,
        },
        {
            "Progress": ((ROOT / "templates" / "progress.yaml").read_text(), {}),
            "Verify": verify_app(verify),
        },
    )
    env = {"PROGRESS_TABLE_NAME": nested["Progress"]["ReplicatorProgressTableName"]}
    return Operations(stack, env, verify["VerifyStateMachineArn"], workdir, metrics, cleanup)


def ddb_bridge(log: Log, *args: str) -> int:
    """Run the installed console script as an operator would; its output line by line on the demo's screen."""
    script = Path(sys.executable).with_name("ddb-bridge")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ddb_bridge.ops.cli"]
    log("$", "ddb-bridge " + " ".join(args))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "bridge"), str(ROOT)])}
    with subprocess.Popen(
        [*command, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            log("", line.rstrip())
    log("", f"(exit code {process.returncode})")
    return int(process.returncode)


def iso(ms: int) -> str:
    """Epoch ms as the ISO 8601 text an operator would type."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_cutover(
    ops: Operations, *, world: LoadWorld, watcher: ReplicationWatcher, traffic: LiveTraffic, log: Log
) -> dict[str, Any]:
    """The runbook from 'catch up' to 'clean up'; returns what happened (the gate's verdict, the rollback's compare)."""
    try:
        return _run(ops, world, watcher, traffic, log)
    finally:
        ops.close()


def _run(
    ops: Operations, world: LoadWorld, watcher: ReplicationWatcher, traffic: LiveTraffic, log: Log
) -> dict[str, Any]:
    stack = ["--stack-name", ops.stack]
    watcher.poller.handler = emf.with_iterator_age(watcher.poller.handler, "table_replicator")  # Lambda's metric
    time.sleep(1.5)  # a few batches with the metric on
    log("cut-over", "runbook step 2, caught up: the replicator's status while the writers still write")
    ddb_bridge(log, "status", *stack)
    log("cut-over", "runbook step 3, verify while writing (differences still in flight are re-read, not counted)")
    ddb_bridge(log, "verify", *stack, "--recheck-delay-seconds", str(RECHECK_WHILE_WRITING_S))

    traffic.stop()
    frozen_at = int(time.time() * 1000)
    log("cut-over", f"runbook step 4, writes frozen at {iso(frozen_at)} ({traffic.written} changes made in all)")
    log("cut-over", "runbook step 5, drain: wait until every change written before the freeze is applied")
    drained = ddb_bridge(log, "drain", *stack, "--frozen-at", iso(frozen_at))
    log("cut-over", "runbook step 6, verify after the freeze: the one the gate reads (nothing is in flight now)")
    verified = ddb_bridge(log, "verify", *stack, "--recheck-delay-seconds", "0")
    log("cut-over", "runbook step 7, the gate")
    gate = ddb_bridge(log, "cutover-check", *stack)
    last = verify_run.latest(boto3.client("stepfunctions"), ops.verify_machine, status="SUCCEEDED")

    log("switch", "runbook step 8, before the switch: forward replication disabled, then the reverse stack")
    world.lambda_.update_event_source_mapping(UUID=world.mapping_uuid, Enabled=False)
    watcher.drain()  # the forward event source is disabled: nothing more flows forward
    credentials = ops.workdir / "credentials"
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(credentials)  # the operator's profile of the target account
    reverse = deploy_reverse(world, credentials_file=credentials)
    ops.metrics.route(reverse.replicator.env["POWERTOOLS_SERVICE_NAME"], reverse.session.client("cloudwatch"))
    log(
        "switch",
        f"stream enabled on {world.target_table}; stack {reverse.stack} (target account) replicates it back "
        f"to {world.source_table}",
    )
    log("switch", "runbook step 9, switch: the writers now write the new table")
    new_side = LiveTraffic(world.target, world.target_table, keys=traffic.keys, rate_per_s=traffic.rate_per_s, seed=7)
    new_side.run(ROLLBACK_SECONDS)
    log("rollback", f"runbook step 10, rollback rehearsal: {new_side.written} changes made on the new side")
    rollback_profile = ["--profile", reverse.profile, "--region", reverse.region]
    rollback_drained = ddb_bridge(log, "drain", "--stack-name", reverse.stack, *rollback_profile, "--frozen-at", "now")
    ddb_bridge(log, "status", "--stack-name", reverse.stack, *rollback_profile)
    old, new = scan_all(world.source, world.source_table), scan_all(world.target, world.target_table)
    mismatches = sum(1 for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    log("rollback", f"the old table equals the new one: {len(new)} items compared, {mismatches} mismatches")
    reverse.watcher.drain()
    log(
        "clean up",
        "runbook step 11: keep the rollback stack until the rollback window closes, then delete it, the "
        "forward stack and the new table's stream if nothing else reads it",
    )
    return {
        "drain_exit": drained,
        "verify_exit": verified,
        "gate_exit": gate,
        "gate": "PASS" if gate == 0 else "FAIL",
        "verify_after_freeze": (
            f"{'clean' if last.clean else 'NOT clean'}, {int(last.output.get('compared') or 0):,} compared"
            if last
            else "none"
        ),
        "rollback_changes": new_side.written,
        "rollback_drain_exit": rollback_drained,
        "rollback_items_compared": len(old.keys() | new.keys()),
        "rollback_mismatches": mismatches,
        "ok": drained == verified == gate == rollback_drained == 0 and mismatches == 0,
    }
