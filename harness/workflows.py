"""Step Functions workflows in moto: the ASL files of statemachine/ with their substitutions, and executions.

Also the local stand-in for Lambda's stream poller behind an event source mapping: `ReplicationWatcher`
watches the mapping in moto and, once a workflow enables it, delivers the stream from TRIM_HORIZON to
the replicator, exactly when the real one would start.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

from .streams import StreamPoller

ROOT = Path(__file__).resolve().parent.parent
SUBSTITUTION_RE = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


def asl_text(workflow: str, substitutions: dict[str, str]) -> str:
    """statemachine/<workflow>.asl.json with every ${Var} replaced, as CloudFormation would do it."""
    text = (ROOT / "statemachine" / f"{workflow}.asl.json").read_text()
    missing = sorted(set(SUBSTITUTION_RE.findall(text)) - set(substitutions))
    if missing:
        raise KeyError(f"no substitution for {missing} in {workflow}.asl.json")
    return SUBSTITUTION_RE.sub(lambda m: substitutions[m.group(1)], text)


def create_state_machine(
    workflow: str, substitutions: dict[str, str], *, name: str | None = None, sfn: Any | None = None
) -> str:
    """Create the workflow in moto (which validates the ASL); returns its ARN."""
    sfn = sfn or boto3.client("stepfunctions")
    role = "arn:aws:iam::123456789012:role/ddb-bridge-local-states"
    return str(
        sfn.create_state_machine(
            name=name or workflow.replace("_", "-"), definition=asl_text(workflow, substitutions), roleArn=role
        )["stateMachineArn"]
    )


def start(
    state_machine_arn: str, execution_input: dict[str, Any], *, name: str | None = None, sfn: Any | None = None
) -> str:
    """Start an execution; returns its ARN."""
    sfn = sfn or boto3.client("stepfunctions")
    # AWS names an unnamed execution with a UUID; moto leaves $$.Execution.Name null, so name it here.
    name = name or str(uuid.uuid4())
    return str(
        sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(execution_input))[
            "executionArn"
        ]
    )


def wait(
    execution_arn: str, *, timeout_s: float = 60.0, sfn: Any | None = None, poll_s: float = 0.05
) -> dict[str, Any]:
    """Wait for the execution to end; returns DescribeExecution with `output` parsed."""
    sfn = sfn or boto3.client("stepfunctions")
    deadline = time.monotonic() + timeout_s
    while True:
        desc = sfn.describe_execution(executionArn=execution_arn)
        if desc["status"] in TERMINAL:
            if desc.get("output"):
                desc["output"] = json.loads(desc["output"])
            return dict(desc)
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {execution_arn} still {desc['status']} after {timeout_s} s")
        time.sleep(poll_s)


def run(
    state_machine_arn: str, execution_input: dict[str, Any], *, timeout_s: float = 60.0, name: str | None = None
) -> dict[str, Any]:
    """Start an execution and wait for its end."""
    return wait(start(state_machine_arn, execution_input, name=name), timeout_s=timeout_s)


def states_entered(execution_arn: str, sfn: Any | None = None) -> list[str]:
    """The names of the states the execution entered, in order."""
    sfn = sfn or boto3.client("stepfunctions")
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


class ReplicationWatcher:
    """Delivers the stream to the replicator from the moment its (moto) event source mapping is enabled."""

    def __init__(
        self, lambda_client: Any, mapping_uuid: str, poller: StreamPoller, *, interval_s: float = 0.05
    ) -> None:
        self.lambda_ = lambda_client
        self.uuid = mapping_uuid
        self.poller = poller
        self.interval_s = interval_s
        self.enabled_at: float | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replication-watcher", daemon=True)
        self._thread.start()

    def _enabled(self) -> bool:
        return bool(self.lambda_.get_event_source_mapping(UUID=self.uuid)["State"] == "Enabled")

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self.enabled_at is None and self._enabled():
                    self.enabled_at = time.time()
                if self.enabled_at is not None:
                    self.poller.poll_once()
                self._stop.wait(self.interval_s)
        except BaseException as exc:  # noqa: BLE001 - surfaced by drain()
            self.error = exc

    def drain(self, timeout_s: float = 60.0) -> None:
        """Stop watching; if the mapping was enabled, deliver everything left in the stream."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self.error is not None:
            raise self.error
        if self._enabled():  # a mapping disabled meanwhile (a cut-over) delivers nothing more, as on Lambda
            self.enabled_at = self.enabled_at or time.time()
            self.poller.drain(timeout_s=timeout_s)
