"""`ddb-bridge`: the operator's command line (status, verify, drain, cutover-check, replay, resync, recover, ...).

Every command reads what it needs from the stack's outputs (`--stack-name`), so nobody types an ARN; bucket-compare
compares the stack's bucket pair, or any two buckets.
Installed as a console script by `pip install .` (pyproject.toml); `python -m ddb_bridge.ops.cli` is the same.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError, ProfileNotFound

from ..core.clients import client_config
from ..s3.compare import compare_buckets
from . import bucket_compare, gate, verify_run
from .console import ProgressBar, UsageError, duration, parse_time, when
from .drain import DrainState, DrainTimeout, StreamCheck, drain, record_freeze
from .recover import recover
from .replay import Invoke, ReplayReport, lambda_invoker, replay
from .resync import resync
from .stack import StackError, read_stack
from .status import (
    ON_FAILURE_QUEUE,
    PARKING_QUEUE,
    PROGRESS_TABLE,
    REPLICATOR,
    VERIFY_MACHINE,
    VERIFY_PROGRESS,
    Operator,
    aws_error,
    now_ms,
    queue_depth,
    render,
    stack_status,
)

OK, NOT_OK, USAGE, ERROR, TIMED_OUT, INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_CODES = """exit codes:
  0  done: gate passed, verify clean, buckets equal, drained, every record replayed
  1  done, and the answer is no: gate failed, verify found differences, buckets differ, a replayed record
     failed again, a recovered range expired or failed again
  2  usage error (unknown option, missing argument)
  3  could not check: no such stack, output or bucket, AWS refused a call, the verify execution failed
  4  timed out: drain or verify did not finish within --timeout
  130 interrupted (Ctrl-C)"""


class CommandError(Exception):
    """A command cannot go on; the message says why and what to do."""


# ---- plumbing ----------------------------------------------------------------------------------------------
def session_of(args: argparse.Namespace) -> boto3.Session:
    """The boto3 session of --profile and --region."""
    session = boto3.Session(profile_name=args.profile, region_name=args.region)
    if not session.region_name:
        raise CommandError("no region: give --region, or set one in the profile or AWS_REGION")
    return session


def operator(args: argparse.Namespace, stack_name: str | None = None) -> Operator:
    """The session, and the stack with every output it surfaces."""
    session = session_of(args)
    name = stack_name or args.stack_name
    stack = read_stack(session.client("cloudformation"), name, str(session.region_name))
    return Operator(session, stack)


def optional_stack(args: argparse.Namespace) -> tuple[Operator | None, boto3.Session]:
    """The stack when --stack-name is given (replay, resync, recover, bucket-compare work without one); the session."""
    op = operator(args) if args.stack_name else None
    return op, (op.session if op else session_of(args))


def out(line: str = "") -> None:
    """One line of output."""
    print(line, flush=True)


def time_arg(text: str) -> int:
    """Argparse type for --frozen-at."""
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---- status ------------------------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    """Lag, throughput, queues, last verify and running workflows of each stack."""
    statuses = [stack_status(operator(args, name), minutes=args.minutes) for name in args.stack_name]
    if args.json:
        out(json.dumps([s.as_json() for s in statuses], indent=2, default=str))
    else:
        for i, status in enumerate(statuses):
            if i:
                out()
            for line in render(status):
                out(line)
    return OK


# ---- verify ------------------------------------------------------------------------------------------------
def cmd_verify(args: argparse.Namespace) -> int:
    """Start the verify workflow and follow it; exit 0 only when the tables are equal."""
    op = operator(args)
    sfn = op.client("stepfunctions")
    machine = op.stack.require(VERIFY_MACHINE, "starts the verify workflow")
    execution_input = verify_run.verify_input(
        repair=args.repair,
        segments=args.segments,
        page_size=args.page_size,
        throughput_percent=args.throughput_percent,
        recheck_delay_seconds=args.recheck_delay_seconds,
        ignore_attributes=args.ignore_attribute,
        sample_size=args.sample_size,
        verify_id=args.verify_id,
    )
    execution = verify_run.start_verify(sfn, machine, execution_input)
    name = execution.rsplit(":", 1)[-1]
    out(f"verify {name} started{' (repair on)' if args.repair else ''}: {execution}")
    bar = ProgressBar()
    read = verify_run.progress_reader(op.client("dynamodb"), op.stack.get(VERIFY_PROGRESS))
    started = now_ms()

    def show(status: str, progress: verify_run.VerifyProgress | None) -> None:
        fraction, text = verify_run.progress_text(status, progress)
        bar.update(fraction, f"{duration(now_ms() - started)}  {text}")

    result = verify_run.follow(
        sfn,
        execution,
        read=read,
        on_update=show,
        timeout_s=args.timeout,
        verify_id=args.verify_id,
        poll_s=args.poll_seconds,
    )
    if result is None:
        bar.finish(None, f"still running after {args.timeout:g} s")
        out(f"verify {name} is still running; `ddb-bridge status` shows its result when it ends")
        return TIMED_OUT
    bar.finish(1.0 if result.status == "SUCCEEDED" else None, f"{result.status} after {duration(now_ms() - started)}")
    for line in verify_report(result):
        out(line)
    if result.status != "SUCCEEDED":
        return ERROR
    return OK if result.clean else NOT_OK


def verify_report(result: verify_run.VerifyResult, *, samples: int = 5) -> list[str]:
    """The verify report: counts, verdict, where the full report is, a few keys of each kind."""
    if result.status != "SUCCEEDED":
        lines = [f"verify did not finish: {result.error}"]
        if result.verify_id and not (result.error or "").startswith("Verify.InvalidInput"):
            lines.append(f"  once the cause is fixed, --verify-id {result.verify_id} resumes it from its checkpoints")
        return lines
    o = result.output
    lines = [
        f"verify {o.get('verifyId', '?')}: {verify_run.summary(o)}",
        f"  started {when(result.started_at_ms)}, {o.get('seconds', '?')} s"
        + (f", segments {o['segments']}" if o.get("segments") else "")
        + (f", mode {o['mode']}" if o.get("mode") else "")
        + (f", {o['itemsPerSecond']:,} items/s" if isinstance(o.get("itemsPerSecond"), int | float) else ""),
        f"  clean: {'yes' if result.clean else 'NO'}",
    ]
    if int(o.get("inFlight") or 0):
        lines.append("  in flight: a side changed between the two reads (a write on its way); not counted")
    if int(o.get("repaired") or 0) or int(o.get("unrepaired") or 0):
        lines.append("  repair: the report gives each key's outcome; verify again to see the tables clean")
    if o.get("report"):
        lines.append(f"  full report: {o['report']}")
    for kind, keys in (o.get("samples") or {}).items():
        if keys:
            shown = ", ".join(json.dumps(k, separators=(",", ":")) for k in keys[:samples])
            lines.append(f"  {kind}: {shown}{' ...' if len(keys) > samples else ''}")
    return lines


# ---- drain -------------------------------------------------------------------------------------------------
def cmd_drain(args: argparse.Namespace) -> int:
    """Wait until the replicator has applied every record written up to the cut (now, or --frozen-at)."""
    op = operator(args)
    table = op.stack.require(PROGRESS_TABLE, "records what the replicator applied")
    source = op.replicator_source()
    cut = args.frozen_at if args.frozen_at is not None else now_ms()
    out(f"drain {source.table}: every change written up to {when(cut)} must be applied (timeout {args.timeout:g} s)")
    if source.state != "Enabled":
        out(f"warning: the replicator's event source is {source.state}: records it has not read will never drain")
    on_failure = op.stack.get(ON_FAILURE_QUEUE)
    check = StreamCheck(
        op.client("dynamodbstreams"), op.client("dynamodb"), table, source.stream_arn, cut, settle_s=args.settle_seconds
    )
    bar = ProgressBar()

    def show(state: DrainState) -> None:
        bar.update(state.confirmed / state.seen if state.seen else None, drain_text(state))

    try:
        state = drain(check, timeout_s=args.timeout, poll_s=args.poll_seconds, on_pass=show)
    except DrainTimeout as exc:
        bar.finish(exc.state.confirmed / exc.state.seen if exc.state.seen else None, drain_text(exc.state))
        out(f"not drained after {args.timeout:g} s: {len(exc.state.pending)} records written up to the cut are left")
        if on_failure and (depth := queue_depth(op.client("sqs"), on_failure)):
            out(f"the on-failure queue holds {depth} batches: their records will not drain until recovered")
        return TIMED_OUT
    bar.finish(1.0, drain_text(state))
    out(f"drained: the replicator has applied every change written up to {when(cut)} ({state.seen} stream records)")
    if args.frozen_at is not None:
        record_freeze(op.client("dynamodb"), table, source.stream_arn, frozen_at_ms=cut, drained_at_ms=now_ms())
        out(f"freeze time {when(cut)} recorded: cutover-check wants a clean verify started after it")
    return OK


def drain_text(state: DrainState) -> str:
    """The drain's progress line."""
    text = f"{state.confirmed:,} of {state.seen:,} records up to the cut applied"
    if state.pending:
        text += f", {len(state.pending):,} left (oldest {duration(state.lag_ms(now_ms()))} old)"
    return text + f"; shards read past the cut {state.shards_done}/{state.shards}"


# ---- cutover-check -----------------------------------------------------------------------------------------
def cmd_cutover_check(args: argparse.Namespace) -> int:
    """The gate: every condition with its value, PASS or FAIL; exit 0 only when all pass."""
    op = operator(args)
    facts = gate.gather(op, frozen_at_ms=args.frozen_at, settle_s=args.settle_seconds)
    conditions = gate.evaluate(facts, max_lag_ms=args.max_lag_ms)
    if args.json:
        out(json.dumps({"stack": op.stack.name, **gate.report(conditions)}, indent=2))
    else:
        for line in gate.render(op.stack.name, conditions):
            out(line)
    return OK if all(c.passed for c in conditions) else NOT_OK


# ---- replay, resync, recover -------------------------------------------------------------------------------
QUEUE_CLIENTS = client_config(max_attempts=5, read_timeout=900.0)  # an invoke may take a function's 15 minutes


def print_replay(report: ReplayReport) -> int:
    """The tally as JSON; 1 when some record failed again."""
    out(json.dumps(vars(report), indent=2))
    return NOT_OK if report.failed else OK


def from_stack(value: str | None, op: Operator | None, output: str, option: str) -> str:
    """An explicit option, else the stack's output, else an error naming both."""
    if value:
        return value
    if op is not None:
        return op.stack.require(output, f"{option} defaults to")
    raise UsageError(f"give {option}, or --stack-name to read it from the stack's output {output}")


def replicator_invoker(args: argparse.Namespace, op: Operator | None, session: boto3.Session) -> Invoke:
    """Invokes --function, else the stack's table_replicator."""
    lambda_client = session.client("lambda", config=QUEUE_CLIENTS)
    return lambda_invoker(lambda_client, from_stack(args.function, op, REPLICATOR, "--function"))


def cmd_replay(args: argparse.Namespace) -> int:
    """Replay parked records through the function that parked them."""
    op, session = optional_stack(args)
    report = replay(
        session.client("sqs", config=QUEUE_CLIENTS),
        from_stack(args.queue_url, op, PARKING_QUEUE, "--queue-url"),
        replicator_invoker(args, op, session),
        source=args.source,
        max_messages=args.max,
        dry_run=args.dry_run,
    )
    return print_replay(report)


def cmd_resync(args: argparse.Namespace) -> int:
    """Resync the keys table_replicator parked: re-read each from the source, apply its current state."""
    op, session = optional_stack(args)
    source_table = args.source_table or (op.replicator_source().table if op else None)
    if not source_table:
        raise UsageError("give --source-table, or --stack-name to read it from the replicator's event source")
    report = resync(
        sqs=session.client("sqs", config=QUEUE_CLIENTS),
        queue_url=from_stack(args.queue_url, op, PARKING_QUEUE, "--queue-url"),
        source=session.client("dynamodb", config=QUEUE_CLIENTS),
        source_table=source_table,
        invoke=replicator_invoker(args, op, session),
        dry_run=args.dry_run,
        max_messages=args.max,
    )
    return print_replay(report)


def cmd_recover(args: argparse.Namespace) -> int:
    """Recover batches that exhausted their retries: re-read each on-failure pointer's range and apply it."""
    op, session = optional_stack(args)
    lambda_client = session.client("lambda", config=QUEUE_CLIENTS)
    source_table = args.source_table
    if source_table is None and op is not None and op.stack.get(REPLICATOR):
        source_table = op.replicator_source().table  # one-way: each key's current state, never an old record
    report = recover(
        session.client("sqs", config=QUEUE_CLIENTS),
        from_stack(args.queue_url, op, ON_FAILURE_QUEUE, "--queue-url"),
        lambda service, region: session.client(service, region_name=region, config=QUEUE_CLIENTS),
        lambda target: lambda_invoker(lambda_client, target),
        function=args.function,
        source=session.client("dynamodb", config=QUEUE_CLIENTS) if source_table else None,
        source_table=source_table,
        max_messages=args.max,
        dry_run=args.dry_run,
    )
    out(json.dumps(vars(report), indent=2))
    return NOT_OK if report.failed or report.expired or (report.skipped and not args.dry_run) else OK


# ---- bucket-compare ----------------------------------------------------------------------------------------
def cmd_bucket_compare(args: argparse.Namespace) -> int:
    """Compare two buckets (the stack's pair by default), read-only; exit 0 only when they are equal."""
    (op, session), stack = optional_stack(args), None
    if op is not None:
        function = op.stack.get(bucket_compare.BUCKET_REPLICATOR)
        if function:
            stack = bucket_compare.stack_buckets(op.client("lambda"), function)
        elif not (args.source_bucket and args.target_bucket):
            op.stack.require(bucket_compare.BUCKET_REPLICATOR, "names the bucket replicator whose buckets are compared")
    sides = bucket_compare.sides(
        session,
        source_bucket=args.source_bucket,
        target_bucket=args.target_bucket,
        source_prefix=args.source_prefix,
        target_prefix=args.target_prefix,
        target_region=args.target_region,
        target_profile=args.target_profile,
        target_role_arn=args.target_role_arn,
        external_id=args.external_id,
        stack=stack,
    )
    try:
        report = compare_buckets(sides.source_s3, sides.target_s3, sides.pair, ranges=args.ranges, samples=args.samples)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code"))
        if sides.own_credentials and code in ("AccessDenied", "403", "Forbidden"):
            raise CommandError(
                f"AWS refused a call: {aws_error(exc)}; the target bucket was read with your own credentials: "
                "if it belongs to another account, give --target-profile (a profile of that account)"
            ) from exc
        raise
    if args.json:
        out(json.dumps({**report.as_dict(), "target_region": sides.target_region}, indent=2))
    else:
        for line in bucket_compare.render(report, sides):
            out(line)
    return OK if report.ok else NOT_OK


# ---- the parser --------------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    """Every command and option, with their help."""
    aws = argparse.ArgumentParser(add_help=False)
    aws.add_argument("--region", help="the stack's region (default: the profile's, or AWS_REGION)")
    aws.add_argument("--profile", help="the AWS profile to use (default: the environment's credentials)")
    stack = argparse.ArgumentParser(add_help=False, parents=[aws])
    stack.add_argument(
        "--stack-name", required=True, help="the deployed ddb-bridge stack (its outputs name everything)"
    )
    optional = argparse.ArgumentParser(add_help=False, parents=[aws])
    optional.add_argument("--stack-name", help="read the defaults of the options below from this stack's outputs")
    settle = argparse.ArgumentParser(add_help=False)
    settle.add_argument(
        "--settle-seconds",
        type=float,
        default=5.0,
        help="how old the cut must be before an empty read counts as the stream's tip (default 5)",
    )

    top = argparse.ArgumentParser(
        prog="ddb-bridge",
        description="Operate ddb-bridge: is replication healthy, are the tables equal, is it safe to cut over?",
        epilog=EXIT_CODES + "\n\nThe cut-over runbook: docs/runbook.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], summary: str, *parents: Any) -> Any:
        sub = commands.add_parser(
            name,
            parents=list(parents),
            help=summary,
            description=summary,
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(run=run)
        return sub

    status = command("status", cmd_status, "lag, changes/s, queue depths, last verify, running loads, per stack", aws)
    status.add_argument(
        "--stack-name", action="append", required=True, help="a stack to show (repeat for each replicated pair)"
    )
    status.add_argument("--minutes", type=int, default=5, help="the metrics window (default 5)")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")

    verify = command(
        "verify", cmd_verify, "compare the tables item by item (the verify workflow), and follow it", stack
    )
    verify.add_argument("--repair", action="store_true", help="write what differs through the replication writer")
    verify.add_argument("--segments", type=int, help="parallel scan segments per table")
    verify.add_argument("--page-size", type=int, help="items per Scan page")
    verify.add_argument("--throughput-percent", type=int, help="share of each table's read capacity to use")
    verify.add_argument("--recheck-delay-seconds", type=int, help="wait before re-reading a difference")
    verify.add_argument("--ignore-attribute", action="append", help="an attribute not to compare (repeat)")
    verify.add_argument("--sample-size", type=int, help="keys kept per kind of difference")
    verify.add_argument("--verify-id", help="resume this verify (the same id resumes per segment)")
    verify.add_argument("--timeout", type=float, default=6 * 3600, help="stop following after this many seconds")
    verify.add_argument("--poll-seconds", type=float, default=2.0, help="seconds between two looks (default 2)")

    drain_ = command(
        "drain", cmd_drain, "wait until the replicator has applied every change written up to now", stack, settle
    )
    drain_.add_argument(
        "--frozen-at",
        type=time_arg,
        help="the writes were frozen at this time (now, epoch seconds, ISO 8601): drain up to it and record it "
        "for cutover-check; without it, drain up to now and record nothing",
    )
    drain_.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds (default 900)")
    drain_.add_argument("--poll-seconds", type=float, default=2.0, help="seconds between two passes (default 2)")

    check = command(
        "cutover-check", cmd_cutover_check, "the gate: is it safe to switch the writers to the target?", stack, settle
    )
    check.add_argument("--max-lag-ms", type=int, default=1000, help="lag must be under this (default 1000)")
    check.add_argument(
        "--frozen-at", type=time_arg, help="when the writes were frozen (default: the time drain --frozen-at recorded)"
    )
    check.add_argument("--json", action="store_true", help="print JSON instead of text")

    replay_ = command("replay", cmd_replay, "replay parked records through the function that parked them", optional)
    replay_.add_argument("--queue-url", help="the parking queue (default: the stack's ParkingQueueUrl)")
    replay_.add_argument("--function", help="the function to replay through (default: TableReplicatorFunctionName)")
    replay_.add_argument("--source", help="only records parked by this function (stream_relay, relay_applier, ...)")
    replay_.add_argument("--max", type=int, default=100, help="at most this many messages (default 100)")
    replay_.add_argument("--dry-run", action="store_true", help="count the parked messages by reason, change nothing")

    resync_ = command(
        "resync", cmd_resync, "resync the keys table_replicator parked from the source's current items", optional
    )
    resync_.add_argument("--queue-url", help="the parking queue (default: the stack's ParkingQueueUrl)")
    resync_.add_argument("--source-table", help="the source table (default: the replicator's stream's table)")
    resync_.add_argument("--function", help="the replicator (default: the stack's TableReplicatorFunctionName)")
    resync_.add_argument("--max", type=int, default=1000, help="at most this many messages (default 1000)")
    resync_.add_argument("--dry-run", action="store_true", help="count the parked messages by reason, change nothing")

    recover_ = command(
        "recover",
        cmd_recover,
        "re-read the stream ranges of batches that exhausted their retries (on-failure queue) and apply them",
        optional,
    )
    recover_.add_argument("--queue-url", help="the on-failure queue (default: the stack's OnFailureQueueUrl)")
    recover_.add_argument("--function", help="invoke this function (name or ARN) instead of each message's own")
    recover_.add_argument(
        "--source-table",
        help="re-read each key from this table and apply its current state (default with a one-way --stack-name: "
        "the replicator's source table; without either, records are applied as the stream holds them)",
    )
    recover_.add_argument("--max", type=int, default=10, help="at most this many messages (default 10)")
    recover_.add_argument("--dry-run", action="store_true", help="list the pointers, read and change nothing")

    compare = command(
        "bucket-compare",
        cmd_bucket_compare,
        "compare two buckets key by key (missing, extra, different objects), read-only; the stack's pair by default",
    )
    compare.add_argument(
        "--stack-name", help="read the buckets, prefixes and target region from this stack's bucket replicator"
    )
    compare.add_argument("--region", "--source-region", help="the source side's region (default: the profile's)")
    compare.add_argument(
        "--profile", "--source-profile", help="the source side's AWS profile (default: the environment)"
    )
    compare.add_argument("--source-bucket", help="the source bucket (default: the stack's)")
    compare.add_argument("--target-bucket", help="the target bucket (default: the stack's)")
    compare.add_argument("--source-prefix", help="compare only keys under this prefix (default: the stack's, else all)")
    compare.add_argument(
        "--target-prefix", help="target keys are this prefix + the key after --source-prefix (default: the stack's)"
    )
    compare.add_argument("--target-region", help="the target bucket's region (default: the stack's, else --region)")
    compare.add_argument(
        "--target-profile", help="AWS profile that reads the target (another account, or the other partition's keys)"
    )
    compare.add_argument("--target-role-arn", help="a role to assume for reading the target (same partition)")
    compare.add_argument("--external-id", help="the ExternalId that role demands")
    compare.add_argument("--ranges", type=int, default=8, help="key ranges compared in parallel (default 8)")
    compare.add_argument("--samples", type=int, default=20, help="keys kept per kind of difference (default 20)")
    compare.add_argument("--json", action="store_true", help="print JSON instead of text")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (see EXIT_CODES)."""
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"ddb-bridge {args.command}: {exc}", file=sys.stderr)
        return USAGE
    except (CommandError, StackError) as exc:
        print(f"ddb-bridge {args.command}: {exc}", file=sys.stderr)
    except ClientError as exc:
        print(f"ddb-bridge {args.command}: AWS refused a call: {aws_error(exc)}", file=sys.stderr)
    except (NoCredentialsError, NoRegionError, ProfileNotFound) as exc:
        print(f"ddb-bridge {args.command}: {exc} (check --profile, --region and your credentials)", file=sys.stderr)
    except BotoCoreError as exc:
        print(f"ddb-bridge {args.command}: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"\nddb-bridge {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    return ERROR


if __name__ == "__main__":
    sys.exit(main())
