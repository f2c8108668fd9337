"""Settings of functions/full_load_control and functions/backfill."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..core.settings import (
    BUCKET_RE,
    MODES,
    TABLE_RE,
    URL_RE,
    Env,
    PartitionPair,
    PeerKeysSettings,
    SettingsError,
    TargetSettings,
    VersionAttrs,
    _peer_for,
    cached_loader,
    crosses_partition,
    log_keys,
)

# ---- full load and backfill -------------------------------------------------------------------------------
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_FUNCTION_RE = re.compile(r"^[\w-]{1,64}$|^arn:aws(-cn|-us-gov)?:lambda:[a-z0-9-]+:\d{12}:function:[\w-]{1,64}$")


@dataclass(frozen=True)
class FullLoadSettings(PartitionPair):
    """Settings of functions/full_load_control (statemachine/full_load.asl.json)."""

    source_table: str
    source_region: str
    target: TargetSettings
    peer: PeerKeysSettings | None
    export_bucket: str
    export_bucket_owner: str | None
    export_prefix: str
    peer_bucket: str | None
    replicator_function: str
    mapping_uuid: str | None
    safety_minutes: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> FullLoadSettings:
        """Read every full_load_control setting; raises SettingsError naming the first bad one."""
        env = Env(environ)
        source_region = env.region("AWS_REGION")
        target = TargetSettings.from_env(env)
        peer = _peer_for(env, source_region, target)
        peer_bucket = env.optional("PEER_BUCKET_NAME", pattern=BUCKET_RE, expects="an S3 bucket name")
        if crosses_partition(source_region, target) and not peer_bucket:
            raise SettingsError(
                "PEER_BUCKET_NAME is required for a cross-partition full load: expected the bucket "
                f"in {target.region}'s partition that the export files are copied to"
            )
        return cls(
            source_table=env.table("SOURCE_TABLE_NAME"),
            source_region=source_region,
            target=target,
            peer=peer,
            export_bucket=env.bucket("EXPORT_BUCKET_NAME"),
            export_bucket_owner=env.optional(
                "EXPORT_BUCKET_OWNER",
                pattern=_ACCOUNT_RE,
                expects="the 12-digit account id that owns the export bucket",
            ),
            export_prefix=env.key_prefix("EXPORT_PREFIX", "ddb-bridge/full-load"),
            peer_bucket=peer_bucket,
            replicator_function=env.text(
                "REPLICATOR_FUNCTION_NAME", pattern=_FUNCTION_RE, expects="the table_replicator function's name or ARN"
            ),
            mapping_uuid=env.optional(
                "EVENT_SOURCE_MAPPING_UUID",
                pattern=re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
                expects="the UUID of the replicator's stream event source mapping",
            ),
            safety_minutes=env.integer("HANDOVER_SAFETY_MINUTES", 120, minimum=10, maximum=720),
        )


@dataclass(frozen=True)
class BackfillSettings:
    """Settings of functions/backfill (statemachine/backfill.asl.json)."""

    source_table: str
    source_region: str
    target: TargetSettings
    peer: PeerKeysSettings | None
    replication_mode: str
    versions: VersionAttrs
    tombstone_table: str | None
    progress_table: str
    write_concurrency: int
    parking_queue_url: str | None = None
    log_keys: str = "plain"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> BackfillSettings:
        """Read every backfill setting; raises SettingsError naming the first bad one."""
        env = Env(environ)
        source_region = env.region("AWS_REGION")
        target = TargetSettings.from_env(env)
        return cls(
            source_table=env.table("SOURCE_TABLE_NAME"),
            source_region=source_region,
            target=target,
            peer=_peer_for(env, source_region, target),
            replication_mode=env.choice("REPLICATION_MODE", MODES, "ordered"),
            versions=VersionAttrs.from_env(env),
            tombstone_table=env.optional("TOMBSTONE_TABLE_NAME", pattern=TABLE_RE, expects="a DynamoDB table name"),
            progress_table=env.table("BACKFILL_PROGRESS_TABLE"),
            write_concurrency=env.integer("BACKFILL_WRITE_CONCURRENCY", 8, minimum=1, maximum=64),
            parking_queue_url=env.optional(
                "PARKING_QUEUE_URL", pattern=URL_RE, expects="the URL of the SQS parking queue"
            ),
            log_keys=log_keys(env),
        )


load_full_load_settings = cached_loader(FullLoadSettings.from_env)
load_backfill_settings = cached_loader(BackfillSettings.from_env)
