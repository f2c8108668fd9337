"""What `ddb-bridge status` shows per stack, and the facts the cut-over gate is made of.

Every figure comes from where AWS keeps it: CloudWatch (the replicator's IteratorAge, the LAG metric,
ChangesApplied), SQS (queue depths), Step Functions (verify, full load and backfill executions), the
replicator's progress table (its last batch) and the event source mapping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import ClientError

from ..core.observability import CHANGES_APPLIED, LAG, NAMESPACE, SERVICE_DIMENSION
from ..table.progress import latest_progress
from . import verify_run
from .console import duration, when
from .stack import EventSource, Stack, StackError, stream_event_source

# Stack outputs the CLI reads; the root stack surfaces them (or one of its nested stacks does).
PARKING_QUEUE = "ParkingQueueUrl"
ON_FAILURE_QUEUE = "OnFailureQueueUrl"
REPLICATOR = "TableReplicatorFunctionName"
PROGRESS_TABLE = "ReplicatorProgressTableName"
VERIFY_MACHINE = "VerifyStateMachineArn"
VERIFY_PROGRESS = "VerifyProgressTableName"
FULL_LOAD_MACHINE = "FullLoadStateMachineArn"
BACKFILL_MACHINE = "BackfillStateMachineArn"
WORKFLOWS = {FULL_LOAD_MACHINE: "full load", BACKFILL_MACHINE: "backfill"}
# The functions a stack may run, the counter that says how many changes each one handled.
FUNCTIONS = {
    REPLICATOR: ("table_replicator", CHANGES_APPLIED.name),
    "StreamRelayFunctionName": ("stream_relay", "ChangesForwarded"),
    "RelayApplierFunctionName": ("relay_applier", CHANGES_APPLIED.name),
}


class Operator:
    """One boto3 session (profile, region) and the stack it looks at; clients are made once, when first needed."""

    def __init__(self, session: boto3.Session, stack: Stack) -> None:
        self.session = session
        self.stack = stack
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """A client in the stack's region."""
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.stack.region)
        return self._clients[service]

    def replicator_source(self) -> EventSource:
        """The replicator's event source mapping (its stream, its state)."""
        function = self.stack.require(REPLICATOR, "names the replicator (one-way stacks only)")
        return stream_event_source(self.client("lambda"), function)


def queue_depth(sqs: Any, queue_url: str) -> int:
    """Messages in a queue: visible, in flight (being read or replayed) and delayed."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(v) for v in attrs.values())


def running_executions(sfn: Any, state_machine_arn: str) -> list[dict[str, Any]]:
    """The workflow's executions that are running now."""
    executions: list[dict[str, Any]] = []
    paginator = sfn.get_paginator("list_executions")
    for page in paginator.paginate(stateMachineArn=state_machine_arn, statusFilter="RUNNING"):
        executions.extend(page["executions"])
    return executions


def running_workflows(op: Operator) -> list[str]:
    """'full load <execution> since <time>' for every full load or backfill running now."""
    running = []
    for output, label in WORKFLOWS.items():
        arn = op.stack.get(output)
        if arn:
            for e in running_executions(op.client("stepfunctions"), arn):
                running.append(f"{label} {e['name']} (started {e['startDate'].astimezone(UTC):%Y-%m-%dT%H:%M:%SZ})")
    return running


@dataclass
class MetricWindow:
    """The largest value and the sum of a metric over the last minutes; None when it has no datapoint."""

    maximum: float | None
    total: float | None


def metric_windows(
    cloudwatch: Any, queries: dict[str, tuple[str, str, list[dict[str, str]], str | None]], minutes: int
) -> dict[str, MetricWindow]:
    """For each id: (namespace, metric name, dimensions, unit) -> its max and sum over the window, per minute."""
    end = datetime.now(UTC) + timedelta(minutes=1)
    start = end - timedelta(minutes=minutes + 1)
    metric_queries = []
    for qid, (namespace, name, dimensions, unit) in queries.items():
        for stat in ("Maximum", "Sum"):
            stat_query: dict[str, Any] = {
                "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dimensions},
                "Period": 60,
                "Stat": stat,
            }
            if unit:
                stat_query["Unit"] = unit
            metric_queries.append({"Id": f"{qid}_{stat.lower()}", "MetricStat": stat_query, "ReturnData": True})
    values: dict[str, list[float]] = {}
    kwargs: dict[str, Any] = {"MetricDataQueries": metric_queries, "StartTime": start, "EndTime": end}
    while True:
        page = cloudwatch.get_metric_data(**kwargs)
        for result in page["MetricDataResults"]:
            values.setdefault(result["Id"], []).extend(float(v) for v in result.get("Values", []))
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]
    return {
        qid: MetricWindow(
            max(values[f"{qid}_maximum"]) if values.get(f"{qid}_maximum") else None,
            sum(values[f"{qid}_sum"]) if values.get(f"{qid}_sum") else None,
        )
        for qid in queries
    }


@dataclass
class FunctionStatus:
    """One stream function of the stack over the last minutes."""

    role: str
    function: str
    service: str
    iterator_age_ms: float | None = None
    lag_ms: float | None = None
    changes_per_second: float | None = None


@dataclass
class StackStatus:
    """Everything `status` shows for one stack."""

    stack: str
    region: str
    functions: list[FunctionStatus] = field(default_factory=list)
    event_source: dict[str, Any] | None = None
    last_batch: dict[str, Any] | None = None
    parked: int | None = None
    on_failure: int | None = None
    verify: dict[str, Any] | None = None
    running: list[str] = field(default_factory=list)
    minutes: int = 5
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the `--json` output)."""
        out = dict(vars(self))
        out["functions"] = [vars(f) for f in self.functions]
        return out


def service_of(lambda_client: Any, function: str) -> str:
    """The function's metric dimension `service` (its POWERTOOLS_SERVICE_NAME), else its name."""
    config = lambda_client.get_function_configuration(FunctionName=function)
    variables = (config.get("Environment") or {}).get("Variables") or {}
    return str(variables.get("POWERTOOLS_SERVICE_NAME") or function)


def stack_status(op: Operator, *, minutes: int = 5) -> StackStatus:
    """Gather the status of one stack; what cannot be read is named in `problems`, never guessed."""
    status = StackStatus(op.stack.name, op.stack.region, minutes=minutes)
    queries: dict[str, tuple[str, str, list[dict[str, str]], str | None]] = {}
    for output, (role, counter) in FUNCTIONS.items():
        function = op.stack.get(output)
        if not function:
            continue
        fs = FunctionStatus(role, function, service_of(op.client("lambda"), function))
        status.functions.append(fs)
        by_service = [{"Name": SERVICE_DIMENSION, "Value": fs.service}]
        queries[f"age{len(queries)}"] = (
            "AWS/Lambda",
            "IteratorAge",
            [{"Name": "FunctionName", "Value": function}],
            None,
        )
        queries[f"lag{len(queries)}"] = (NAMESPACE, LAG.name, by_service, LAG.unit.value)
        queries[f"changes{len(queries)}"] = (NAMESPACE, counter, by_service, None)
    if queries:
        windows = list(metric_windows(op.client("cloudwatch"), queries, minutes).values())
        for i, fs in enumerate(status.functions):
            age, lag, changes = windows[3 * i : 3 * i + 3]
            fs.iterator_age_ms, fs.lag_ms = age.maximum, lag.maximum
            fs.changes_per_second = None if changes.total is None else round(changes.total / (minutes * 60), 2)
    if op.stack.get(REPLICATOR):
        _replicator_status(op, status)
    for output, attr in ((PARKING_QUEUE, "parked"), (ON_FAILURE_QUEUE, "on_failure")):
        url = op.stack.get(output)
        if url:
            setattr(status, attr, queue_depth(op.client("sqs"), url))
        else:
            status.problems.append(f"no output {output}")
    verify_arn = op.stack.get(VERIFY_MACHINE)
    if verify_arn:
        last = verify_run.latest(op.client("stepfunctions"), verify_arn)
        status.verify = None if last is None else _verify_json(last)
        read = verify_run.progress_reader(op.client("dynamodb"), op.stack.get(VERIFY_PROGRESS))
        if last is not None and status.verify is not None and last.status == "RUNNING" and read and last.verify_id:
            status.verify["progress"] = verify_run.progress_text(last.status, read(last.verify_id))[1]
    status.running = running_workflows(op)
    return status


def _replicator_status(op: Operator, status: StackStatus) -> None:
    try:
        source = op.replicator_source()
    except StackError as exc:
        status.problems.append(str(exc))
        return
    status.event_source = {
        "table": source.table,
        "stream": source.stream_arn,
        "state": source.state,
        "uuid": source.uuid,
    }
    table = op.stack.get(PROGRESS_TABLE)
    if not table:
        status.problems.append(f"no output {PROGRESS_TABLE}: the last batch is unknown (drain needs it too)")
        return
    items = latest_progress(op.client("dynamodb"), table, source.stream_arn)
    if items:
        last = max(items, key=lambda i: i.written_at_ms)
        status.last_batch = {
            "writtenAtMs": last.written_at_ms,
            "newestChangeCreatedMs": last.newest_created_ms,
            "records": len(last.seqs),
            "lagMs": max(0, last.written_at_ms - last.newest_created_ms),
        }


def _verify_json(result: verify_run.VerifyResult) -> dict[str, Any]:
    out: dict[str, Any] = {"execution": result.execution_arn.rsplit(":", 1)[-1], "status": result.status}
    if result.output:
        out.update({"clean": bool(result.output.get("clean")), "summary": verify_run.summary(result.output)})
        out["startedAtMs"] = result.started_at_ms
        out["report"] = result.output.get("report")
    if result.error:
        out["error"] = result.error
    return out


def render(status: StackStatus) -> list[str]:
    """The human-readable block of one stack."""

    def ms(value: float | None) -> str:
        return "no datapoints" if value is None else duration(value)

    lines = [f"stack {status.stack} ({status.region})"]
    if status.event_source:
        es = status.event_source
        lines.append(f"  source            {es['table']}, stream event source {es['state']}")
    for fs in status.functions:
        lines.append(f"  {fs.role:<17} {fs.function} (metrics of the last {status.minutes} min)")
        lines.append(f"    lag             {LAG.name} max {ms(fs.lag_ms)}; IteratorAge max {ms(fs.iterator_age_ms)}")
        rate = "no datapoints" if fs.changes_per_second is None else f"{fs.changes_per_second:g}"
        lines.append(f"    changes/s       {rate}")
    if status.last_batch:
        lb = status.last_batch
        lines.append(
            f"  last batch        {when(lb['writtenAtMs'])}: {lb['records']} records, newest change "
            f"{duration(lb['lagMs'])} old when applied"
        )
    lines.append(f"  parking queue     {'-' if status.parked is None else status.parked} messages")
    lines.append(f"  on-failure queue  {'-' if status.on_failure is None else status.on_failure} messages")
    if status.verify:
        v = status.verify
        verdict = (" clean" if v.get("clean") else " NOT clean") if "clean" in v else ""
        detail = v.get("summary") or v.get("progress") or v.get("error") or ""
        started = f", started {when(v['startedAtMs'])}" if v.get("startedAtMs") else ""
        lines.append(f"  last verify       {v['execution']} {v['status']}{verdict}{started}")
        if detail:
            lines.append(f"                    {detail}")
    else:
        lines.append("  last verify       none")
    lines.append(f"  running           {'; '.join(status.running) if status.running else 'no full load or backfill'}")
    lines.extend(f"  note              {p}" for p in status.problems)
    return lines


def now_ms() -> int:
    """The operator's clock, epoch ms."""
    return int(time.time() * 1000)


def aws_error(exc: ClientError) -> str:
    """An AWS error in one line: code and message."""
    error = exc.response.get("Error", {})
    return f"{error.get('Code', 'Error')}: {error.get('Message', str(exc))}"
