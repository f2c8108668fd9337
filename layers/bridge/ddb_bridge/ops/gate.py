"""The cut-over gate: is it safe to switch the writers to the target now? Every condition, its value, PASS or FAIL.

It passes only when all hold: the replicator's lag is under the threshold (measured on the stream itself:
the age of the oldest record not yet applied), the parking and on-failure queues are empty, no full load or
backfill runs, and the latest finished verify is clean and started after the writes were frozen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from .console import duration, when
from .drain import StreamCheck, recorded_freeze
from .stack import StackError
from .status import (
    ON_FAILURE_QUEUE,
    PARKING_QUEUE,
    PROGRESS_TABLE,
    VERIFY_MACHINE,
    Operator,
    aws_error,
    now_ms,
    queue_depth,
    running_workflows,
)
from .verify_run import VerifyResult, latest, summary


@dataclass
class Condition:
    """One condition of the gate."""

    name: str
    passed: bool
    value: str
    expected: str


@dataclass
class Facts:
    """What the gate looks at, gathered from AWS (None: could not be read, which fails its condition)."""

    lag_ms: int | None
    lag_detail: str
    parked: int | None
    on_failure: int | None
    running: list[str] | None
    frozen_at_ms: int | None
    frozen_source: str
    verify: VerifyResult | None
    unknown: dict[str, str] = field(default_factory=dict)  # condition name -> why it could not be read

    def why(self, name: str) -> str:
        """'unknown' and the reason a fact could not be read."""
        return f"unknown: {self.unknown[name]}" if name in self.unknown else "unknown"


T = TypeVar("T")


def evaluate(facts: Facts, *, max_lag_ms: int) -> list[Condition]:
    """Judge the facts; pure, so every condition is tested on its own."""
    conditions = [
        Condition(
            LAG,
            facts.lag_ms is not None and facts.lag_ms < max_lag_ms,
            facts.why(LAG) if facts.lag_ms is None else f"{facts.lag_ms} ms ({facts.lag_detail})",
            f"< {max_lag_ms} ms",
        ),
        _empty(PARKED, facts.parked, facts),
        _empty(ON_FAILURE, facts.on_failure, facts),
        Condition(
            RUNNING,
            facts.running == [],
            facts.why(RUNNING) if facts.running is None else ("; ".join(facts.running) or "none running"),
            "none running",
        ),
    ]
    conditions.append(_verify_condition(facts))
    return conditions


LAG, PARKED, ON_FAILURE, RUNNING, VERIFIED = (
    "lag",
    "parking queue",
    "on-failure queue",
    "no full load or backfill running",
    "clean verify after the freeze",
)


def _empty(name: str, depth: int | None, facts: Facts) -> Condition:
    return Condition(name, depth == 0, facts.why(name) if depth is None else f"{depth} messages", "0 messages")


def _verify_condition(facts: Facts) -> Condition:
    name, expected = VERIFIED, "clean, started at or after the freeze"
    if VERIFIED in facts.unknown:
        return Condition(name, False, facts.why(VERIFIED), expected)
    if facts.frozen_at_ms is None:
        return Condition(name, False, f"no freeze time ({facts.frozen_source})", expected)
    frozen = f"writes frozen at {when(facts.frozen_at_ms)} ({facts.frozen_source})"
    verify = facts.verify
    if verify is None:
        return Condition(name, False, f"no finished verify; {frozen}", expected)
    started = verify.started_at_ms
    label = f"{verify.execution_arn.rsplit(':', 1)[-1]} started {when(started)}"
    if not verify.clean:
        return Condition(name, False, f"{label}: NOT clean, {summary(verify.output)}; {frozen}", expected)
    if started is None or started < facts.frozen_at_ms:
        return Condition(name, False, f"{label}: clean, but started before the freeze; {frozen}", expected)
    return Condition(name, True, f"{label}: clean, {summary(verify.output)}; {frozen}", expected)


def gather(op: Operator, *, frozen_at_ms: int | None, settle_s: float = 5.0) -> Facts:
    """Read every fact the gate needs from AWS; a fact that cannot be read is 'unknown' (its condition fails)."""
    unknown: dict[str, str] = {}

    def read(name: str, fetch: Callable[[], T]) -> T | None:
        try:
            return fetch()
        except StackError as exc:
            unknown[name] = str(exc)
        except ClientError as exc:
            unknown[name] = aws_error(exc)
        except BotoCoreError as exc:
            unknown[name] = str(exc)
        return None

    sqs = op.client("sqs")
    parked = read(PARKED, lambda: queue_depth(sqs, op.stack.require(PARKING_QUEUE, "is the parking queue")))
    on_failure = read(
        ON_FAILURE, lambda: queue_depth(sqs, op.stack.require(ON_FAILURE_QUEUE, "is the on-failure queue"))
    )
    running = read(RUNNING, lambda: running_workflows(op))
    measured = read(LAG, lambda: _measure_lag(op, settle_s))
    lag, detail = measured if measured is not None else (None, "")
    source_of_freeze = "--frozen-at"
    if frozen_at_ms is None:
        recorded = read(VERIFIED, lambda: _recorded_freeze(op))
        if recorded is None:
            source_of_freeze = "give --frozen-at, or run drain --frozen-at once the writes are frozen"
        else:
            frozen_at_ms, source_of_freeze = recorded[0], "recorded by drain"
    verify_arn = read(VERIFIED, lambda: op.stack.require(VERIFY_MACHINE, "starts the verify workflow"))
    verify = (
        read(VERIFIED, lambda: latest(op.client("stepfunctions"), verify_arn, status="SUCCEEDED"))
        if verify_arn
        else None
    )
    return Facts(lag, detail, parked, on_failure, running, frozen_at_ms, source_of_freeze, verify, unknown)


def _measure_lag(op: Operator, settle_s: float) -> tuple[int, str]:
    source = op.replicator_source()
    table = op.stack.require(PROGRESS_TABLE, "records what the replicator applied (lag, drain, freeze time)")
    cut = now_ms()
    check = StreamCheck(
        op.client("dynamodbstreams"), op.client("dynamodb"), table, source.stream_arn, cut, settle_s=settle_s
    )
    state = check.measure()
    lag = state.lag_ms(now_ms())
    if state.pending:
        return (
            lag,
            f"{len(state.pending)} of {state.seen} stream records read are not applied yet, oldest {duration(lag)} old",
        )
    return lag, f"every stream record up to now is applied; {state.seen} read since the last drain checkpoint"


def _recorded_freeze(op: Operator) -> tuple[int, int] | None:
    table = op.stack.require(PROGRESS_TABLE, "holds the freeze time drain recorded")
    return recorded_freeze(op.client("dynamodb"), table, op.replicator_source().stream_arn)


def report(conditions: list[Condition]) -> dict[str, Any]:
    """The `--json` document."""
    return {"pass": all(c.passed for c in conditions), "conditions": [asdict(c) for c in conditions]}


def render(stack: str, conditions: list[Condition]) -> list[str]:
    """One line per condition, then the verdict."""
    width = max(len(c.name) for c in conditions)
    lines = [f"cut-over check of stack {stack}"]
    for c in conditions:
        lines.append(f"  {'PASS' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.value}  (needs {c.expected})")
    verdict = all(c.passed for c in conditions)
    lines.append(
        "verdict: PASS - safe to switch the writers to the target"
        if verdict
        else f"verdict: FAIL - do not switch ({sum(not c.passed for c in conditions)} condition(s) failed)"
    )
    return lines
