"""The local world of bucket replication: source bucket, event queue (+ DLQ), the target bucket elsewhere.

The source bucket's events reach an SQS queue (with its DLQ); beside them the sequencer table and the
parking queue; the target bucket is in another account (AssumeRole + ExternalId) or in the other
partition (cn-north-1, an IAM user's keys in Secrets Manager).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import boto3

from . import moto_s3_events
from .lambda_bridge import BRIDGE, install
from .lambdas import LocalFunction
from .load_world import PEER_REGION, create_bucket, peer_session
from .sqs_source import SqsSource, take_all
from .workflows import create_state_machine
from .world import EXTERNAL_ID, SOURCE_REGION, TARGET_REGION, TARGET_ROLE_ARN, target_session

EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]


@dataclass
class BucketWorld:
    """Both buckets, the queues and tables around them, and the clients of each side."""

    name: str
    s3: Any  # source side
    sqs: Any
    dynamodb: Any
    source_bucket: str
    target_bucket: str
    target_session: boto3.Session
    target_region: str
    queue_url: str
    dlq_url: str
    parking_url: str
    sequencer_table: str
    peer_secret: str | None = None

    @property
    def target(self) -> Any:
        """The target side's S3 client."""
        return self.target_session.client("s3", region_name=self.target_region)

    @property
    def progress_table(self) -> str:
        """The bucket backfill's progress table (source side)."""
        return f"{self.name}-s3-progress"

    def env(self, **overrides: str) -> dict[str, str]:
        """bucket_replicator's (and bucket_backfill's) environment."""
        env = {
            "AWS_REGION": SOURCE_REGION,
            "SOURCE_BUCKET_NAME": self.source_bucket,
            "TARGET_BUCKET_NAME": self.target_bucket,
            "TARGET_REGION": self.target_region,
            "PARKING_QUEUE_URL": self.parking_url,
            "WORK_QUEUE_URL": self.queue_url,
            "SEQUENCER_TABLE_NAME": self.sequencer_table,
            "BACKFILL_PROGRESS_TABLE": self.progress_table,
            "POWERTOOLS_SERVICE_NAME": "bucket_replicator",
        }
        if self.peer_secret:
            env["PEER_CREDENTIALS_SECRET"] = self.peer_secret
        else:
            env.update({"TARGET_ROLE_ARN": TARGET_ROLE_ARN, "TARGET_EXTERNAL_ID": EXTERNAL_ID})
        return {k: v for k, v in {**env, **overrides}.items() if v != ""}

    def replicator(self, **overrides: str) -> LocalFunction:
        """functions/bucket_replicator, cold-started with this world's environment."""
        return LocalFunction("bucket_replicator", self.env(**overrides))

    def source_of(self, function: LocalFunction, *, batch_size: int = 10) -> SqsSource:
        """The queue delivered to `function` the way Lambda's SQS event source does."""
        return SqsSource(self.sqs, self.queue_url, function.invoke, batch_size=batch_size)

    def backfill_machine(self, *, warm: int = 1, **overrides: str) -> str:
        """functions/bucket_backfill deployed, its progress table and the workflow created; returns the ARN."""
        self.create_progress_table()
        env = self.env(POWERTOOLS_SERVICE_NAME="bucket_backfill", **overrides)
        arn = BRIDGE.deploy(
            "bucket_backfill", env, lambda_client=boto3.client("lambda", region_name=SOURCE_REGION), warm=warm
        )
        return create_state_machine(
            "bucket_backfill", {"BucketBackfillFunctionArn": arn}, name=f"bucket-backfill-{uuid.uuid4().hex[:6]}"
        )

    def create_progress_table(self) -> None:
        """The bucket backfill's progress table."""
        _table(self.dynamodb, self.progress_table)

    def put(self, key: str, body: bytes, **kwargs: Any) -> dict[str, Any]:
        """Write a source object."""
        return dict(self.s3.put_object(Bucket=self.source_bucket, Key=key, Body=body, **kwargs))

    def delete(self, key: str, **kwargs: Any) -> None:
        """Delete a source object."""
        self.s3.delete_object(Bucket=self.source_bucket, Key=key, **kwargs)

    def contents(self, client: Any, bucket: str) -> dict[str, bytes]:
        """Every object of a bucket: key -> bytes."""
        out: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                out[obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        return out

    def source_contents(self) -> dict[str, bytes]:
        """The source bucket's objects."""
        return self.contents(self.s3, self.source_bucket)

    def target_contents(self) -> dict[str, bytes]:
        """The target bucket's objects."""
        return self.contents(self.target, self.target_bucket)

    def parked(self) -> list[dict[str, Any]]:
        """Every parked message, parsed."""
        from .world import read_parked

        return read_parked(self.sqs, self.parking_url)


def _table(client: Any, name: str) -> None:
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def bucket_world(
    *,
    cross_partition: bool = False,
    versioned: bool = False,
    notify: bool = True,
    visibility_s: int = 1,
    max_receives: int = 4,
    name: str | None = None,
) -> BucketWorld:
    """Create the source side (bucket, queue + DLQ, notifications, sequencer table, parking) and the target bucket."""
    moto_s3_events.install()
    install()  # Step Functions' Lambda tasks run our handlers
    name = name or f"media-{uuid.uuid4().hex[:6]}"
    s3 = boto3.client("s3", region_name=SOURCE_REGION)
    sqs = boto3.client("sqs", region_name=SOURCE_REGION)
    dynamodb = boto3.client("dynamodb", region_name=SOURCE_REGION)
    source_bucket = f"{name}-src"
    create_bucket(s3, source_bucket, SOURCE_REGION)
    if versioned:
        s3.put_bucket_versioning(Bucket=source_bucket, VersioningConfiguration={"Status": "Enabled"})
    dlq = sqs.create_queue(QueueName=f"{name}-events-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName=f"{name}-events",
        Attributes={
            "VisibilityTimeout": str(visibility_s),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    parking = sqs.create_queue(QueueName=f"{name}-parking")["QueueUrl"]
    sequencers = f"{name}-s3-sequencers"
    _table(dynamodb, sequencers)
    if notify:
        s3.put_bucket_notification_configuration(
            Bucket=source_bucket,
            NotificationConfiguration={"QueueConfigurations": [{"QueueArn": queue_arn, "Events": EVENTS}]},
        )
        take_all(sqs, queue)  # the s3:TestEvent (tests send their own)
    target_bucket = f"{name}-dst"
    secret = None
    if cross_partition:
        session, keys = peer_session()
        secret = f"ddb-bridge/{name}/peer-keys"
        boto3.client("secretsmanager", region_name=SOURCE_REGION).create_secret(
            Name=secret, SecretString=json.dumps(keys)
        )
        region = PEER_REGION
    else:
        session, region = target_session(TARGET_REGION), TARGET_REGION
    create_bucket(session.client("s3", region_name=region), target_bucket, region)
    return BucketWorld(
        name, s3, sqs, dynamodb, source_bucket, target_bucket, session, region, queue, dlq, parking, sequencers, secret
    )
