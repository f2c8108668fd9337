"""The local world of a full load or backfill: source and target sides, the export bucket, the event source.

The source table has a stream and PITR; the target side is another account and region reached by
AssumeRole, or another partition (aws-cn) reached with an IAM user's keys kept in Secrets Manager.

Every knob a pre-check looks at can be turned wrong here (no PITR, KEYS_ONLY stream, mapping enabled or
at LATEST, an existing target table, local secondary indexes), so the tests can show each failure.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3

from . import botocore_cache, moto_fixes, moto_patches
from .lambda_bridge import BRIDGE, install
from .lambdas import LocalFunction
from .moto_server import TARGET_ACCOUNT
from .streams import StreamPoller
from .workflows import ReplicationWatcher, create_state_machine
from .world import EXTERNAL_ID, SOURCE_REGION, TARGET_REGION, TARGET_ROLE_ARN, KeySchema, target_session

PEER_REGION = "cn-north-1"
PEER_ACCOUNT = "333333333333"


@dataclass
class TableShape:
    """How the source table is built."""

    key_schema: KeySchema = field(default_factory=lambda: [("pk", "S")])
    stream_view: str | None = "NEW_AND_OLD_IMAGES"
    pitr: bool = True
    gsi: tuple[str, str] | None = None  # (attribute, type) of a GSI hash key
    lsi: tuple[str, str] | None = None  # (attribute, type) of an LSI range key
    billing: str = "PAY_PER_REQUEST"


def create_source_table(client: Any, name: str, shape: TableShape) -> dict[str, Any]:
    """Create the source table as described; returns DescribeTable."""
    attrs = {n: t for n, t in shape.key_schema}
    key_schema = [
        {"AttributeName": n, "KeyType": "HASH" if i == 0 else "RANGE"} for i, (n, _) in enumerate(shape.key_schema)
    ]
    kwargs: dict[str, Any] = {"TableName": name, "KeySchema": key_schema, "BillingMode": shape.billing}
    if shape.billing == "PROVISIONED":
        kwargs["ProvisionedThroughput"] = {"ReadCapacityUnits": 50, "WriteCapacityUnits": 20}
    if shape.gsi:
        attrs[shape.gsi[0]] = shape.gsi[1]
        gsi: dict[str, Any] = {
            "IndexName": f"by-{shape.gsi[0]}",
            "Projection": {"ProjectionType": "ALL"},
            "KeySchema": [{"AttributeName": shape.gsi[0], "KeyType": "HASH"}],
        }
        if shape.billing == "PROVISIONED":
            gsi["ProvisionedThroughput"] = {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        kwargs["GlobalSecondaryIndexes"] = [gsi]
    if shape.lsi:
        attrs[shape.lsi[0]] = shape.lsi[1]
        kwargs["LocalSecondaryIndexes"] = [
            {
                "IndexName": f"by-{shape.lsi[0]}",
                "Projection": {"ProjectionType": "KEYS_ONLY"},
                "KeySchema": [key_schema[0], {"AttributeName": shape.lsi[0], "KeyType": "RANGE"}],
            }
        ]
    kwargs["AttributeDefinitions"] = [{"AttributeName": n, "AttributeType": t} for n, t in attrs.items()]
    if shape.stream_view:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": shape.stream_view}
    client.create_table(**kwargs)
    if shape.pitr:
        client.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    return dict(client.describe_table(TableName=name)["Table"])


def create_bucket(s3: Any, name: str, region: str) -> None:
    """A bucket in the client's account and partition."""
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)


def peer_session(region: str = PEER_REGION) -> tuple[boto3.Session, dict[str, str]]:
    """An IAM user's long-lived keys in the peer partition's account (aws-cn), and a session on them."""
    sts = boto3.client("sts", region_name=region)
    creds = sts.assume_role(RoleArn=f"arn:aws-cn:iam::{PEER_ACCOUNT}:role/admin", RoleSessionName="setup")[
        "Credentials"
    ]
    admin = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    )
    iam = admin.client("iam")
    user = f"ddb-bridge-peer-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    keys = {"accessKeyId": key["AccessKeyId"], "secretAccessKey": key["SecretAccessKey"]}
    return boto3.Session(
        aws_access_key_id=keys["accessKeyId"], aws_secret_access_key=keys["secretAccessKey"], region_name=region
    ), keys


@dataclass
class LoadWorld:
    """Everything a full load or a backfill touches, with the clients of each side."""

    name: str
    source: Any
    streams: Any
    lambda_: Any
    sqs: Any
    s3: Any
    target_session: boto3.Session
    target_region: str
    stream_arn: str
    parking_url: str
    export_bucket: str
    export_bucket_owner: str | None
    mapping_uuid: str | None = None
    peer_secret: str | None = None
    peer_bucket: str | None = None

    @property
    def target(self) -> Any:
        """The target side's DynamoDB client."""
        return self.target_session.client("dynamodb", region_name=self.target_region)

    @property
    def source_table(self) -> str:
        """The source table's name."""
        return self.name

    @property
    def target_table(self) -> str:
        """The target table's name."""
        return f"{self.name}-copy"

    def target_access_env(self) -> dict[str, str]:
        """How a function reaches the target side."""
        env = {
            "TARGET_TABLE_NAME": self.target_table,
            "TARGET_REGION": self.target_region,
            "AWS_REGION": SOURCE_REGION,
            "SOURCE_TABLE_NAME": self.source_table,
        }
        if self.peer_secret:
            env["PEER_CREDENTIALS_SECRET"] = self.peer_secret
        else:
            env.update({"TARGET_ROLE_ARN": TARGET_ROLE_ARN, "TARGET_EXTERNAL_ID": EXTERNAL_ID})
        return env

    def replicator_env(self, **overrides: str) -> dict[str, str]:
        """table_replicator's environment."""
        env = {
            **self.target_access_env(),
            "REPLICATION_MODE": "ordered",
            "PARKING_QUEUE_URL": self.parking_url,
            "POWERTOOLS_SERVICE_NAME": "table_replicator",
        }
        env.pop("SOURCE_TABLE_NAME")
        return {**env, **overrides}

    def full_load_env(self, **overrides: str) -> dict[str, str]:
        """full_load_control's environment."""
        env = {
            **self.target_access_env(),
            "EXPORT_BUCKET_NAME": self.export_bucket,
            "REPLICATOR_FUNCTION_NAME": "table_replicator",
            "POWERTOOLS_SERVICE_NAME": "full_load_control",
        }
        if self.export_bucket_owner:
            env["EXPORT_BUCKET_OWNER"] = self.export_bucket_owner
        if self.peer_bucket:
            env["PEER_BUCKET_NAME"] = self.peer_bucket
        return {**env, **overrides}

    def create_mapping(
        self, *, enabled: bool = False, starting_position: str = "TRIM_HORIZON", max_record_age: int | None = None
    ) -> str:
        """The replicator's event source mapping (safe in moto with the bridge installed)."""
        kwargs: dict[str, Any] = {
            "FunctionName": "table_replicator",
            "EventSourceArn": self.stream_arn,
            "StartingPosition": starting_position,
            "Enabled": enabled,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        }
        if max_record_age is not None:
            kwargs["MaximumRecordAgeInSeconds"] = max_record_age
        self.mapping_uuid = str(self.lambda_.create_event_source_mapping(**kwargs)["UUID"])
        return self.mapping_uuid

    def deploy_replicator(self, **overrides: str) -> LocalFunction:
        """table_replicator in moto (so a mapping can name it) and as a local function for the poller."""
        BRIDGE.deploy("table_replicator", self.replicator_env(**overrides), warm=0, lambda_client=self.lambda_)
        return LocalFunction("table_replicator", self.replicator_env(**overrides))

    def full_load_machine(self, **env_overrides: str) -> str:
        """full_load_control deployed, and the full-load state machine created; returns the machine's ARN."""
        arn = BRIDGE.deploy("full_load_control", self.full_load_env(**env_overrides), lambda_client=self.lambda_)
        return create_state_machine(
            "full_load", {"FullLoadControlFunctionArn": arn}, name=f"full-load-{uuid.uuid4().hex[:6]}"
        )

    def watcher(self, replicator: LocalFunction, *, batch_size: int = 100) -> ReplicationWatcher:
        """Delivers the stream to the replicator once the workflow enables the mapping."""
        assert self.mapping_uuid, "create the mapping first"
        poller = StreamPoller(self.streams, self.stream_arn, replicator.invoke, batch_size=batch_size)
        return ReplicationWatcher(self.lambda_, self.mapping_uuid, poller)

    # ---- backfill ----------------------------------------------------------------------------------------------
    @property
    def tombstone_table(self) -> str:
        """The tombstone table's name (target side)."""
        return f"{self.name}-tombstones"

    @property
    def progress_table(self) -> str:
        """The backfill progress table's name (source side)."""
        return f"{self.name}-backfill-progress"

    def create_target_table(self, *, stream: bool = False, billing: str = "PAY_PER_REQUEST") -> None:
        """The existing target table a backfill copies into (same keys as the source)."""
        desc = self.source.describe_table(TableName=self.source_table)["Table"]
        kwargs: dict[str, Any] = {
            "TableName": self.target_table,
            "KeySchema": desc["KeySchema"],
            "AttributeDefinitions": [
                a
                for a in desc["AttributeDefinitions"]
                if a["AttributeName"] in {k["AttributeName"] for k in desc["KeySchema"]}
            ],
            "BillingMode": billing,
        }
        if billing == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = {"ReadCapacityUnits": 100, "WriteCapacityUnits": 100}
        if stream:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        self.target.create_table(**kwargs)

    def create_backfill_tables(self) -> None:
        """The tombstone table (target side) and the progress table (source side)."""
        schema = {
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        }
        self.target.create_table(TableName=self.tombstone_table, **schema)
        self.source.create_table(TableName=self.progress_table, **schema)

    def backfill_env(self, **overrides: str) -> dict[str, str]:
        """The backfill function's environment."""
        env = {
            **self.target_access_env(),
            "BACKFILL_PROGRESS_TABLE": self.progress_table,
            "TOMBSTONE_TABLE_NAME": self.tombstone_table,
            "REPLICATION_MODE": "ordered",
            "POWERTOOLS_SERVICE_NAME": "backfill",
        }
        return {k: v for k, v in {**env, **overrides}.items() if v != ""}

    def backfill_machine(self, *, warm: int = 1, **env_overrides: str) -> str:
        """The backfill function deployed, and the backfill state machine created; returns the machine's ARN."""
        arn = BRIDGE.deploy("backfill", self.backfill_env(**env_overrides), lambda_client=self.lambda_, warm=warm)
        return create_state_machine("backfill", {"BackfillFunctionArn": arn}, name=f"backfill-{uuid.uuid4().hex[:6]}")

    def put(self, item: dict[str, Any]) -> None:
        """Write an item to the source table."""
        self.source.put_item(TableName=self.source_table, Item=item)

    def delete(self, key: dict[str, Any]) -> None:
        """Delete an item from the source table."""
        self.source.delete_item(TableName=self.source_table, Key=key)

    def seed(self, items: list[dict[str, Any]]) -> None:
        """Write many items to the source table quickly (BatchWriteItem, 25 at a time)."""
        for i in range(0, len(items), 25):
            self.source.batch_write_item(
                RequestItems={self.source_table: [{"PutRequest": {"Item": it}} for it in items[i : i + 25]]}
            )


def load_world(
    shape: TableShape | None = None,
    *,
    name: str | None = None,
    cross_partition: bool = False,
    bucket_in_target: bool = True,
) -> LoadWorld:
    """Create the source side and the target side's bucket (not the target table: the import creates it)."""
    install()
    moto_fixes.install()
    moto_patches.apply()  # transactions that roll back must not cut stream readers off nor erase writes
    botocore_cache.install()
    shape = shape or TableShape()
    name = name or f"orders-{uuid.uuid4().hex[:6]}"
    source = boto3.client("dynamodb", region_name=SOURCE_REGION)
    desc = create_source_table(source, name, shape)
    sqs = boto3.client("sqs", region_name=SOURCE_REGION)
    s3 = boto3.client("s3", region_name=SOURCE_REGION)
    parking = sqs.create_queue(QueueName=f"{name}-parking")["QueueUrl"]
    export_bucket = f"{name}-export"
    if cross_partition:
        session, keys = peer_session()
        secret = f"ddb-bridge/{name}/peer-keys"
        boto3.client("secretsmanager", region_name=SOURCE_REGION).create_secret(
            Name=secret, SecretString=json.dumps(keys)
        )
        create_bucket(s3, export_bucket, SOURCE_REGION)
        peer_bucket = f"{name}-peer"
        create_bucket(session.client("s3"), peer_bucket, PEER_REGION)
        world = LoadWorld(
            name,
            source,
            boto3.client("dynamodbstreams", region_name=SOURCE_REGION),
            boto3.client("lambda", region_name=SOURCE_REGION),
            sqs,
            s3,
            session,
            PEER_REGION,
            desc.get("LatestStreamArn", ""),
            parking,
            export_bucket,
            None,
            peer_secret=secret,
            peer_bucket=peer_bucket,
        )
    else:
        session = target_session(TARGET_REGION)
        owner = TARGET_ACCOUNT if bucket_in_target else None
        create_bucket(session.client("s3") if bucket_in_target else s3, export_bucket, TARGET_REGION)
        world = LoadWorld(
            name,
            source,
            boto3.client("dynamodbstreams", region_name=SOURCE_REGION),
            boto3.client("lambda", region_name=SOURCE_REGION),
            sqs,
            s3,
            session,
            TARGET_REGION,
            desc.get("LatestStreamArn", ""),
            parking,
            export_bucket,
            owner,
        )
    return world
