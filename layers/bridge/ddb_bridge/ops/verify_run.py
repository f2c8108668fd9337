"""Start the verify workflow, follow it while it runs, and read its results.

Input and output are statemachine/verify.asl.json's (docs/verify.md lists them): the execution SUCCEEDS
even when the tables differ, and its output says whether they are `clean` (no missing, extra or different
item). While it runs, its progress is read from its progress table (`ddb_bridge.verify.progress`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..verify.progress import VerifyProgress, read_progress

TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
COUNTS = ("compared", "equal", "missing", "extra", "different", "inFlight", "repaired", "unrepaired")

ProgressReader = Callable[[str], VerifyProgress | None]


def progress_reader(dynamodb: Any, table: str | None) -> ProgressReader | None:
    """The verify workflow's progress, read from its progress table; None when the stack names no such table."""
    if not table:
        return None
    return lambda verify_id: read_progress(dynamodb, table, verify_id)


def verify_id_of(description: dict[str, Any]) -> str:
    """The verifyId of an execution (DescribeExecution): its input's `verifyId`, else its name (the default)."""
    name = str(description["executionArn"]).rsplit(":", 1)[-1]
    try:
        given = json.loads(description.get("input") or "{}")
    except ValueError:
        return name
    return str(given["verifyId"]) if isinstance(given, dict) and given.get("verifyId") else name


@dataclass
class VerifyResult:
    """A finished verify execution."""

    execution_arn: str
    status: str
    output: dict[str, Any]
    error: str | None = None
    verify_id: str | None = None

    @property
    def clean(self) -> bool:
        """SUCCEEDED and no missing, extra or different item."""
        return self.status == "SUCCEEDED" and bool(self.output.get("clean"))

    @property
    def started_at_ms(self) -> int | None:
        """When the verify started (its own clock, epoch ms)."""
        value = self.output.get("startedAt")
        return int(value) if isinstance(value, int | float) else None


def verify_input(
    *,
    repair: bool = False,
    segments: int | None = None,
    page_size: int | None = None,
    throughput_percent: int | None = None,
    recheck_delay_seconds: int | None = None,
    ignore_attributes: list[str] | None = None,
    sample_size: int | None = None,
    verify_id: str | None = None,
) -> dict[str, Any]:
    """The execution input: only the fields given (the workflow has a default for every one)."""
    fields: dict[str, Any] = {
        "verifyId": verify_id,
        "segments": segments,
        "pageSize": page_size,
        "throughputPercent": throughput_percent,
        "recheckDelaySeconds": recheck_delay_seconds,
        "ignoreAttributes": ignore_attributes or None,
        "sampleSize": sample_size,
    }
    out = {k: v for k, v in fields.items() if v is not None}
    if repair:
        out["repair"] = True
    return out


def start_verify(sfn: Any, state_machine_arn: str, execution_input: dict[str, Any]) -> str:
    """Start an execution; returns its ARN.

    It is named <verifyId or "verify">-<UTC time>-<random>: execution names are unique for 90 days, and a
    verify resumed with the same verifyId is a new execution. Without a verifyId the workflow takes the name.
    """
    prefix = str(execution_input.get("verifyId") or "verify")[:40]
    name = f"{prefix}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
    response = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(execution_input))
    return str(response["executionArn"])


def result_of(description: dict[str, Any]) -> VerifyResult:
    """A DescribeExecution response as a VerifyResult."""
    output: dict[str, Any] = {}
    if description.get("output"):
        parsed = json.loads(description["output"])
        output = parsed if isinstance(parsed, dict) else {}
    error = None
    if description["status"] != "SUCCEEDED":
        error = f"{description.get('error') or description['status']}: {description.get('cause') or ''}".strip(": ")
    return VerifyResult(
        str(description["executionArn"]), str(description["status"]), output, error, verify_id_of(description)
    )


def follow(
    sfn: Any,
    execution_arn: str,
    *,
    read: ProgressReader | None,
    on_update: Callable[[str, VerifyProgress | None], None],
    timeout_s: float,
    verify_id: str | None = None,
    poll_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> VerifyResult | None:
    """Poll the execution (and its progress) until it ends; None when `timeout_s` passed first.

    The progress is read under `verify_id` (the input's verifyId; by default the execution's name).
    """
    deadline = clock() + timeout_s
    verify_id = verify_id or execution_arn.rsplit(":", 1)[-1]
    while True:
        description = sfn.describe_execution(executionArn=execution_arn)
        if description["status"] in TERMINAL:
            return result_of(description)
        on_update(description["status"], read(verify_id) if read else None)
        if clock() >= deadline:
            return None
        sleep(poll_s)


def latest(sfn: Any, state_machine_arn: str, *, status: str | None = None) -> VerifyResult | None:
    """The most recently started execution (with that status), or None."""
    kwargs: dict[str, Any] = {"stateMachineArn": state_machine_arn, "maxResults": 20}
    if status:
        kwargs["statusFilter"] = status
    executions = sfn.list_executions(**kwargs)["executions"]
    if not executions:
        return None
    newest = max(executions, key=lambda e: e["startDate"])
    description = sfn.describe_execution(executionArn=newest["executionArn"])
    if description["status"] not in TERMINAL:
        return VerifyResult(
            str(description["executionArn"]), str(description["status"]), {}, verify_id=verify_id_of(description)
        )
    return result_of(description)


def summary(output: dict[str, Any]) -> str:
    """Compared 10,000: 0 missing, 0 extra, 0 different (2 in flight), 3 repaired, 1 unrepaired."""
    n = {k: int(output.get(k) or 0) for k in COUNTS}
    text = f"compared {n['compared']:,}: {n['missing']:,} missing, {n['extra']:,} extra, {n['different']:,} different"
    if n["inFlight"]:
        text += f" ({n['inFlight']:,} in flight)"
    if n["repaired"]:
        text += f", {n['repaired']:,} repaired"
    if n["unrepaired"]:
        text += f", {n['unrepaired']:,} unrepaired"
    return text


def progress_text(status: str, progress: VerifyProgress | None) -> tuple[float | None, str]:
    """The progress bar's fraction and text for a running verify.

    Until the recheck the differences are candidates (seen once); from the recheck on, confirmed ones.
    """
    if progress is None:
        return None, f"{status.lower()} (no progress table: the stack has no output VerifyProgressTableName)"
    if not progress.segments_total:
        return None, f"{status.lower()}, planning"
    differences = progress.missing + progress.extra + progress.different
    fraction = progress.segments_done / progress.segments_total
    what = "candidates" if progress.phase in ("source", "target") else "differences"
    text = (
        f"phase {progress.phase}, segments {progress.segments_done}/{progress.segments_total}, "
        f"compared {progress.compared:,}, {what} {differences:,} (missing {progress.missing:,}, "
        f"extra {progress.extra:,}, different {progress.different:,})"
    )
    if progress.phase not in ("source", "target"):
        text += f", in flight {progress.in_flight:,}, settled {progress.settled:,}"
    if progress.phase in ("repair", "done") and (progress.repaired or progress.unrepaired):
        text += f", repaired {progress.repaired:,}, unrepaired {progress.unrepaired:,}"
    return fraction, text
