"""The local world `ddb-bridge` operates on: a one-way pair, its replicator recording progress, and its stack.

The stack is a real CloudFormation stack in moto, so the CLI reads it the way it reads a deployed one:
DescribeStacks on the root, then ListStackResources and DescribeStacks on each nested stack. SAM's
transform does not run in moto, so the root is a stack whose outputs are its parameters; its nested stacks
are `templates/progress.yaml` as it is (the replicator's progress table) and the verify application's
outputs (`VerifyStateMachineArn`, `VerifyProgressTableName`, `VerifyReportBucketName`), which name the
verify workflow deployed as `harness/verify.py` deploys it: statemachine/verify.asl.json executed by
moto's Step Functions, its Lambda tasks running functions/verify through the Lambda bridge, its progress
table and report bucket. Neither name is surfaced by the root, so the CLI's fallback to nested stacks is
exercised on every run.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from .emf import with_iterator_age
from .lambda_bridge import BRIDGE
from .lambdas import LocalFunction
from .load_world import LoadWorld, TableShape, create_bucket, load_world
from .moto_server import SOURCE_ACCOUNT
from .streams import StreamPoller, sqs_on_failure
from .verify import create_verify_resources, progress_table, report_bucket, verify_machine
from .workflows import ReplicationWatcher
from .world import EXTERNAL_ID, SOURCE_REGION

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_BUCKET = "ddb-bridge-local-templates"
ROLE = "arn:aws:iam::123456789012:role/ddb-bridge-local-states"


def _template_url(session: boto3.Session, key: str, body: str) -> str:
    """Upload a template to the account's template bucket (bucket names are global: one per account)."""
    bucket = f"{TEMPLATE_BUCKET}-{session.client('sts').get_caller_identity()['Account']}"
    s3 = session.client("s3", region_name="us-east-1")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        create_bucket(s3, bucket, "us-east-1")
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
    return f"https://{bucket}.s3.amazonaws.com/{key}"


def deploy_stack(
    name: str,
    outputs: dict[str, str],
    nested: dict[str, tuple[str, dict[str, str]]],
    *,
    session: boto3.Session | None = None,
) -> dict[str, dict[str, str]]:
    """A root stack whose outputs are `outputs`, with nested stacks {logical id: (template body, parameters)}.

    Returns each nested stack's outputs by logical id.
    """
    session = session or boto3.Session()
    cfn = session.client("cloudformation")
    resources: dict[str, Any] = {}
    for logical, (body, parameters) in nested.items():
        resources[logical] = {
            "Type": "AWS::CloudFormation::Stack",
            "Properties": {"TemplateURL": _template_url(session, f"{name}/{logical}", body), "Parameters": parameters},
        }
    template = {
        "Description": "The deployed ddb-bridge root stack as the CLI reads it (harness): outputs as parameters",
        "Parameters": {f"P{i}": {"Type": "String"} for i in range(len(outputs))},
        "Resources": resources,
        "Outputs": {key: {"Value": {"Ref": f"P{i}"}} for i, key in enumerate(outputs)},
    }
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": f"P{i}", "ParameterValue": v} for i, v in enumerate(outputs.values())],
    )
    found: dict[str, dict[str, str]] = {}
    for resource in cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]:
        if resource["ResourceType"] == "AWS::CloudFormation::Stack":
            (stack,) = cfn.describe_stacks(StackName=resource["PhysicalResourceId"])["Stacks"]
            found[resource["LogicalResourceId"]] = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    return found


VERIFY_OUTPUTS = ("VerifyStateMachineArn", "VerifyProgressTableName", "VerifyReportBucketName")


def verify_app(outputs: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The nested stack of templates/verify.yaml as the CLI sees it: its outputs (moto runs no SAM transform).

    Returns (template body, parameters) for `deploy_stack`'s `nested`.
    """
    template = {
        "Description": "The verify application's outputs (harness): templates/verify.yaml's, naming what it deployed",
        "Parameters": {key: {"Type": "String"} for key in outputs},
        "Resources": {
            "Marker": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {
                    "Name": {"Fn::Sub": "/ddb-bridge-local/${AWS::StackName}"},
                    "Type": "String",
                    "Value": "verify outputs",
                },
            }
        },
        "Outputs": {key: {"Value": {"Ref": key}} for key in outputs},
    }
    return json.dumps(template), dict(outputs)


def deploy_verify(world: LoadWorld, stack: str) -> dict[str, str]:
    """The verify workflow of `stack` (`<stack>-verify`, as the template names it), and its outputs.

    Its function reaches the target as the full load's does (the loader role, or the peer's keys).
    """
    create_verify_resources(world)
    machine = verify_machine(
        world, name=f"{stack}-verify", function_name=f"{stack}-verify", POWERTOOLS_SERVICE_NAME=f"{stack}-verify"
    )
    return dict(zip(VERIFY_OUTPUTS, (machine, progress_table(world), report_bucket(world)), strict=True))


def long_running_machine(label: str) -> str:
    """A state machine whose executions stay RUNNING (a Wait): what the gate sees while a load runs."""
    definition = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 3600, "End": True}}}
    sfn = boto3.client("stepfunctions")
    return str(
        sfn.create_state_machine(
            name=f"{label}-{uuid.uuid4().hex[:6]}", definition=json.dumps(definition), roleArn=ROLE
        )["stateMachineArn"]
    )


@dataclass
class OperatedWorld:
    """A one-way pair, deployed and operated: the stack, its replicator and the event source feeding it."""

    world: LoadWorld
    stack: str
    function: str
    replicator: LocalFunction
    poller: StreamPoller
    progress_table: str
    on_failure_url: str
    verify_machine: str
    report_bucket: str
    full_load_machine: str
    backfill_machine: str
    _feeder: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def feed(self, interval_s: float = 0.05) -> None:
        """Deliver the stream to the replicator in the background, as the enabled event source does."""
        self._stop.clear()

        def run() -> None:
            while not self._stop.is_set():
                self.poller.poll_once()
                self._stop.wait(interval_s)

        self._feeder = threading.Thread(target=run, name="event-source", daemon=True)
        self._feeder.start()

    def stop_feeding(self) -> None:
        """Stop the background delivery."""
        self._stop.set()
        if self._feeder is not None:
            self._feeder.join()
            self._feeder = None


def operated_world(*, batch_size: int = 100, service: str | None = None) -> OperatedWorld:
    """Source and target tables, the replicator recording progress, its enabled event source, and the stack."""
    world = load_world(TableShape(key_schema=[("pk", "S")], gsi=None))
    world.create_target_table()
    on_failure = world.sqs.create_queue(QueueName=f"{world.name}-on-failure")["QueueUrl"]
    stack = f"ddb-bridge-{world.name}"
    function = f"{stack}-TableReplicator"  # a name of its own, as a deployed stack's function has
    verify = deploy_verify(world, stack)
    full_load, backfill = long_running_machine("full-load"), long_running_machine("backfill")
    nested = deploy_stack(
        stack,
        {
            "ParkingQueueUrl": world.parking_url,
            "OnFailureQueueUrl": on_failure,
            "TableReplicatorFunctionName": function,
            "FullLoadStateMachineArn": full_load,
            "BackfillStateMachineArn": backfill,
        },
        {
            "Progress": ((ROOT / "templates" / "progress.yaml").read_text(), {}),
            "Verify": verify_app(verify),
        },
    )
    progress = nested["Progress"]["ReplicatorProgressTableName"]
    env = world.replicator_env(
        PROGRESS_TABLE_NAME=progress, POWERTOOLS_SERVICE_NAME=service or f"{stack}-table-replicator"
    )
    function_arn = BRIDGE.deploy("table_replicator", env, function_name=function, warm=0, lambda_client=world.lambda_)
    replicator = LocalFunction("table_replicator", env)
    world.mapping_uuid = str(
        world.lambda_.create_event_source_mapping(
            FunctionName=function,
            EventSourceArn=world.stream_arn,
            StartingPosition="TRIM_HORIZON",
            Enabled=True,
            FunctionResponseTypes=["ReportBatchItemFailures"],
        )["UUID"]
    )
    poller = StreamPoller(
        world.streams,
        world.stream_arn,
        with_iterator_age(replicator.invoke, function),
        batch_size=batch_size,
        on_failure=sqs_on_failure(world.sqs, on_failure),
        function_arn=function_arn,  # what Lambda writes in an on-failure message
    )
    return OperatedWorld(
        world,
        stack,
        function,
        replicator,
        poller,
        progress,
        on_failure,
        verify["VerifyStateMachineArn"],
        verify["VerifyReportBucketName"],
        full_load,
        backfill,
    )


# ---- the same stack the other way round: rollback ---------------------------------------------------------------
ROLLBACK_FUNCTION = "rollback_replicator"
ROLLBACK_PROFILE = "ddb-bridge-target-account"


@dataclass
class ReversePair:
    """The stack deployed the other way round, in the target account: the new table's stream -> the old table."""

    stack: str
    region: str
    profile: str
    session: boto3.Session
    stream_arn: str
    replicator: LocalFunction
    watcher: ReplicationWatcher


def _placeholder_function(session: boto3.Session, name: str, env: dict[str, str]) -> None:
    """The function in moto, in the session's account, with an execution role of that account."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "lambda.amazonaws.com"}}
        ],
    }
    role = session.client("iam").create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(trust))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("app.py", "# runs in the local harness\n")
    session.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role["Role"]["Arn"],
        Handler="app.lambda_handler",
        Code={"ZipFile": archive.getvalue()},
        Environment={"Variables": {k: v for k, v in env.items() if not k.startswith("AWS_")}},
    )


def write_profile(path: Path, name: str, session: boto3.Session) -> None:
    """An AWS credentials file holding `session`'s credentials as profile `name` (what an operator has)."""
    creds = session.get_credentials().get_frozen_credentials()
    path.write_text(
        f"[{name}]\naws_access_key_id = {creds.access_key}\naws_secret_access_key = {creds.secret_key}\n"
        f"aws_session_token = {creds.token}\n"
    )


def deploy_reverse(world: LoadWorld, *, credentials_file: Path, stack: str | None = None) -> ReversePair:
    """Before the switch: a stream on the new table, and the stack in the target account replicating it back.

    Its event source starts enabled at TRIM_HORIZON of a stream created after the drain, so every change
    the writers make on the new side from the switch on flows back. The function runs with the target
    account's credentials (Lambda hands a function its role's keys in the environment) and writes the old
    table through a role in the source account, as table_replicator writes any target.
    """
    target = world.target_session
    region = world.target_region
    desc = target.client("dynamodb").update_table(
        TableName=world.target_table,
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]
    stream_arn = str(desc["LatestStreamArn"])
    sqs = target.client("sqs")
    parking = sqs.create_queue(QueueName=f"{world.name}-rollback-parking")["QueueUrl"]
    on_failure = sqs.create_queue(QueueName=f"{world.name}-rollback-on-failure")["QueueUrl"]
    stack = stack or f"ddb-bridge-{world.name}-rollback"
    nested = deploy_stack(
        stack,
        {"ParkingQueueUrl": parking, "OnFailureQueueUrl": on_failure, "TableReplicatorFunctionName": ROLLBACK_FUNCTION},
        {"Progress": ((ROOT / "templates" / "progress.yaml").read_text(), {})},
        session=target,
    )
    creds = target.get_credentials().get_frozen_credentials()
    env = {
        "TARGET_TABLE_NAME": world.source_table,
        "TARGET_REGION": SOURCE_REGION,
        "TARGET_ROLE_ARN": f"arn:aws:iam::{SOURCE_ACCOUNT}:role/ddb-bridge-rollback-writer",
        "TARGET_EXTERNAL_ID": EXTERNAL_ID,
        "REPLICATION_MODE": "ordered",
        "PARKING_QUEUE_URL": parking,
        "PROGRESS_TABLE_NAME": nested["Progress"]["ReplicatorProgressTableName"],
        "POWERTOOLS_SERVICE_NAME": f"{stack}-table-replicator",
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": creds.access_key,
        "AWS_SECRET_ACCESS_KEY": creds.secret_key,
        "AWS_SESSION_TOKEN": str(creds.token),
    }
    lambda_ = target.client("lambda")
    _placeholder_function(target, ROLLBACK_FUNCTION, env)  # with a role of its own account (no cross-account pass)
    BRIDGE.deploy("table_replicator", env, function_name=ROLLBACK_FUNCTION, warm=0, lambda_client=lambda_)
    replicator = LocalFunction("table_replicator", env)
    mapping = lambda_.create_event_source_mapping(
        FunctionName=ROLLBACK_FUNCTION,
        EventSourceArn=stream_arn,
        StartingPosition="TRIM_HORIZON",
        Enabled=True,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    poller = StreamPoller(
        target.client("dynamodbstreams"),
        stream_arn,
        with_iterator_age(replicator.invoke, ROLLBACK_FUNCTION, target.client("cloudwatch")),
        batch_size=100,
        on_failure=sqs_on_failure(sqs, on_failure),
    )
    write_profile(credentials_file, ROLLBACK_PROFILE, target)
    watcher = ReplicationWatcher(lambda_, str(mapping["UUID"]), poller)
    return ReversePair(stack, region, ROLLBACK_PROFILE, target, stream_arn, replicator, watcher)
