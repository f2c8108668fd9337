"""Builds the local world of one-way replication: source account + stream, target account by AssumeRole."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import boto3

from ddb_bridge.core.keys import key_id

from .moto_server import TARGET_ACCOUNT

SOURCE_REGION = "us-east-1"
TARGET_REGION = "eu-west-1"
EXTERNAL_ID = "ddb-bridge-local-external-id"
TARGET_ROLE_ARN = f"arn:aws:iam::{TARGET_ACCOUNT}:role/ddb-bridge-target-writer"

KeySchema = list[tuple[str, str]]  # [(name, "S"|"N"|"B")], hash first


def create_table(client: Any, name: str, key_schema: KeySchema, *, stream: bool = False, pitr: bool = False) -> str:
    """Create an on-demand table (optionally with a NEW_AND_OLD_IMAGES stream); returns the stream ARN or ''."""
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": [
            {"AttributeName": n, "KeyType": "HASH" if i == 0 else "RANGE"} for i, (n, _) in enumerate(key_schema)
        ],
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in key_schema],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    desc = client.create_table(**kwargs)["TableDescription"]
    if pitr:
        client.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    return str(desc.get("LatestStreamArn", ""))


def target_session(region: str = TARGET_REGION) -> boto3.Session:
    """A session in the target account (as the target role), the way the replicator gets one."""
    creds = boto3.client("sts", region_name=SOURCE_REGION).assume_role(
        RoleArn=TARGET_ROLE_ARN, RoleSessionName="harness", ExternalId=EXTERNAL_ID
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    )


def scan_all(client: Any, table: str) -> dict[str, dict[str, Any]]:
    """Every item of a table (consistent), keyed by canonical key identity, binary as bytes."""
    desc = client.describe_table(TableName=table)["Table"]
    names = [k["AttributeName"] for k in desc["KeySchema"]]
    items: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        for item in page.get("Items", []):
            items[canonical_key({n: item[n] for n in names})] = item
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def canonical_key(key: dict[str, Any]) -> str:
    """key_id of a client-form key (bytes are base64-encoded first, as Lambda would)."""
    from ddb_bridge.core.codec import encode_image

    return key_id(encode_image(key))


@dataclass
class OneWayWorld:
    """Source table + stream in the source account, target table in the target account."""

    source: Any
    streams: Any
    sqs: Any
    target: Any
    source_table: str
    target_table: str
    stream_arn: str
    parking_url: str
    on_failure_url: str

    def replicator_env(self, **overrides: str) -> dict[str, str]:
        """table_replicator's environment for this world."""
        env = {
            "TARGET_TABLE_NAME": self.target_table,
            "TARGET_REGION": TARGET_REGION,
            "TARGET_ROLE_ARN": TARGET_ROLE_ARN,
            "TARGET_EXTERNAL_ID": EXTERNAL_ID,
            "REPLICATION_MODE": "ordered",
            "PARKING_QUEUE_URL": self.parking_url,
            "AWS_REGION": SOURCE_REGION,
            "POWERTOOLS_SERVICE_NAME": "table_replicator",
        }
        env.update(overrides)
        return env

    def parked(self) -> list[dict[str, Any]]:
        """Every message in the parking queue (bodies parsed)."""
        return read_parked(self.sqs, self.parking_url)


def read_parked(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every message in a parking queue, bodies parsed (each left invisible for 5 minutes)."""
    out: list[dict[str, Any]] = []
    while True:
        msgs = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=300).get(
            "Messages", []
        )
        if not msgs:
            return out
        out.extend(json.loads(m["Body"]) for m in msgs)


def one_way_world(key_schema: KeySchema | None = None, *, name: str | None = None) -> OneWayWorld:
    """Create the source table with a stream, the parking and on-failure queues, and the target table."""
    key_schema = key_schema or [("pk", "S")]
    name = name or f"orders-{uuid.uuid4().hex[:6]}"
    source = boto3.client("dynamodb", region_name=SOURCE_REGION)
    stream_arn = create_table(source, name, key_schema, stream=True, pitr=True)
    sqs = boto3.client("sqs", region_name=SOURCE_REGION)
    parking = sqs.create_queue(QueueName=f"{name}-parking")["QueueUrl"]
    on_failure = sqs.create_queue(QueueName=f"{name}-on-failure")["QueueUrl"]
    target = target_session().client("dynamodb")
    create_table(target, name, key_schema)
    return OneWayWorld(
        source,
        boto3.client("dynamodbstreams", region_name=SOURCE_REGION),
        sqs,
        target,
        name,
        name,
        stream_arn,
        parking,
        on_failure,
    )
