"""The verify workflow in the local world: its progress table and report bucket, the function, the state machine.

Built on `load_world`'s two sides (target account by AssumeRole, or the aws-cn peer by keys), so a
verify runs across accounts, regions and partitions exactly as the backfill does.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3

from .lambda_bridge import BRIDGE
from .load_world import LoadWorld, create_bucket
from .workflows import create_state_machine
from .world import SOURCE_REGION


def progress_table(world: LoadWorld) -> str:
    """The verify progress table's name (source side)."""
    return f"{world.name}-verify-progress"


def report_bucket(world: LoadWorld) -> str:
    """The verify report bucket's name (source side)."""
    return f"{world.name}-verify-report"


def create_verify_resources(world: LoadWorld) -> None:
    """The progress table and the report bucket, in the source account, as templates/verify.yaml makes them."""
    world.source.create_table(
        TableName=progress_table(world),
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    create_bucket(world.s3, report_bucket(world), SOURCE_REGION)


def verify_env(world: LoadWorld, **overrides: str) -> dict[str, str]:
    """The verify function's environment (an empty override removes a variable)."""
    env = {
        **world.target_access_env(),
        "VERIFY_PROGRESS_TABLE": progress_table(world),
        "VERIFY_REPORT_BUCKET": report_bucket(world),
        "VERIFY_MODE": "ordered",
        "POWERTOOLS_SERVICE_NAME": "verify",
    }
    return {k: v for k, v in {**env, **overrides}.items() if v != ""}


def verify_machine(
    world: LoadWorld, *, warm: int = 1, name: str | None = None, function_name: str | None = None, **env_overrides: str
) -> str:
    """The verify function deployed, and the verify state machine created; returns the machine's ARN.

    `name` and `function_name` name them as a stack does (`<stack>-verify`); by default, uniquely.
    """
    arn = BRIDGE.deploy(
        "verify",
        verify_env(world, **env_overrides),
        function_name=function_name,
        lambda_client=world.lambda_,
        warm=warm,
    )
    return create_state_machine("verify", {"VerifyFunctionArn": arn}, name=name or f"verify-{uuid.uuid4().hex[:6]}")


def read_report(world: LoadWorld, uri: str) -> list[dict[str, Any]]:
    """The report's JSON lines."""
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = boto3.client("s3", region_name=SOURCE_REGION).get_object(Bucket=bucket, Key=key)["Body"].read()
    return [json.loads(line) for line in body.splitlines() if line.strip()]
