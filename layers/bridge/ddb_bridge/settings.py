"""Typed, validated settings read once from the environment; a bad value fails the cold start clearly."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

T = TypeVar("T")

_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ROLE_ARN_RE = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_TABLE_RE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_ATTR_RE = re.compile(r"^.{1,255}$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}

MODES = ("ordered", "lww")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and what it expects."""


class Env:
    """Reads and validates environment variables, naming the variable in every error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _raw(self, name: str) -> str | None:
        value = self._env.get(name)
        return value.strip() if value is not None and value.strip() != "" else None

    def text(
        self,
        name: str,
        *,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        expects: str = "a non-empty string",
    ) -> str:
        """A required string (or its default), optionally matched against a pattern."""
        value = self._raw(name)
        if value is None:
            if default is None:
                raise SettingsError(f"{name} is required: expected {expects}")
            return default
        if pattern is not None and not pattern.match(value):
            raise SettingsError(f"{name}={value!r} is invalid: expected {expects}")
        return value

    def optional(self, name: str, *, pattern: re.Pattern[str] | None = None, expects: str = "a string") -> str | None:
        """An optional string: None when unset or empty."""
        if self._raw(name) is None:
            return None
        return self.text(name, pattern=pattern, expects=expects)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        """One of a fixed set of words (case-insensitive)."""
        value = (self._raw(name) or default).lower()
        if value not in choices:
            raise SettingsError(f"{name}={value!r} is invalid: expected one of {', '.join(choices)}")
        return value

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        """A whole number within [minimum, maximum]."""
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(
                f"{name}={raw!r} is invalid: expected a whole number from {minimum} to {maximum}"
            ) from None
        if not minimum <= value <= maximum:
            raise SettingsError(f"{name}={value} is out of range: expected {minimum} to {maximum}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        """A boolean: true/false, 1/0, yes/no, on/off."""
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise SettingsError(f"{name}={raw!r} is invalid: expected true or false")

    def region(self, name: str, default: str | None = None) -> str:
        """An AWS region name such as eu-west-1 or cn-north-1."""
        return self.text(name, default=default, pattern=_REGION_RE, expects="an AWS region such as eu-west-1")

    def table(self, name: str, default: str | None = None) -> str:
        """A DynamoDB table name."""
        return self.text(
            name, default=default, pattern=_TABLE_RE, expects="a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)"
        )

    def role_arn(self, name: str) -> str | None:
        """An optional IAM role ARN in any partition."""
        return self.optional(
            name,
            pattern=_ROLE_ARN_RE,
            expects="an IAM role ARN such as arn:aws:iam::123456789012:role/name (arn:aws-cn:... in China)",
        )


@dataclass(frozen=True)
class VersionAttrs:
    """Names of the attributes that carry an item's version (DESIGN.md §3)."""

    ts: str = "last_update_timestamp"
    origin: str = "last_updater_region"

    @classmethod
    def from_env(cls, env: Env) -> VersionAttrs:
        """Read VERSION_TS_ATTR and VERSION_ORIGIN_ATTR."""
        ts = env.text("VERSION_TS_ATTR", default=cls.ts, pattern=_ATTR_RE, expects="an attribute name")
        origin = env.text("VERSION_ORIGIN_ATTR", default=cls.origin, pattern=_ATTR_RE, expects="an attribute name")
        if ts == origin:
            raise SettingsError("VERSION_TS_ATTR and VERSION_ORIGIN_ATTR must name different attributes")
        return cls(ts=ts, origin=origin)


@dataclass(frozen=True)
class TargetSettings:
    """Where and how to reach the target table."""

    table: str
    region: str
    role_arn: str | None
    external_id: str | None
    https_proxy: str | None
    max_attempts: int

    @classmethod
    def from_env(cls, env: Env) -> TargetSettings:
        """Read TARGET_* and HTTPS_PROXY_URL."""
        role_arn = env.role_arn("TARGET_ROLE_ARN")
        external_id = env.optional(
            "TARGET_EXTERNAL_ID",
            pattern=re.compile(r"^[\w+=,.@:/-]{2,1224}$"),
            expects="2-1224 characters of A-Z a-z 0-9 + = , . @ : / - _",
        )
        if role_arn and not external_id:
            raise SettingsError(
                "TARGET_EXTERNAL_ID is required when TARGET_ROLE_ARN is set: "
                "expected the ExternalId that the target role's trust policy demands"
            )
        return cls(
            table=env.table("TARGET_TABLE_NAME"),
            region=env.region("TARGET_REGION", default=env.optional("AWS_REGION") or None),
            role_arn=role_arn,
            external_id=external_id,
            https_proxy=env.optional(
                "HTTPS_PROXY_URL",
                pattern=re.compile(r"^https?://\S+$"),
                expects="a proxy URL such as http://proxy.internal:3128",
            ),
            max_attempts=env.integer("TARGET_MAX_ATTEMPTS", 8, minimum=1, maximum=20),
        )


@dataclass(frozen=True)
class ReplicatorSettings:
    """Settings of functions/table_replicator."""

    target: TargetSettings
    mode: str
    versions: VersionAttrs
    replicate_ttl_deletes: bool
    parking_queue_url: str
    write_concurrency: int
    tombstone_table: str | None
    tombstone_days: int
    aws_region: str | None = None  # this function's own region (AWS_REGION, set by Lambda)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ReplicatorSettings:
        """Read every table_replicator setting; raises SettingsError naming the first bad one."""
        env = Env(environ)
        return cls(
            target=TargetSettings.from_env(env),
            mode=env.choice("REPLICATION_MODE", MODES, "ordered"),
            versions=VersionAttrs.from_env(env),
            replicate_ttl_deletes=env.flag("REPLICATE_TTL_DELETES", True),
            parking_queue_url=env.text(
                "PARKING_QUEUE_URL", pattern=re.compile(r"^https?://\S+$"), expects="the URL of the SQS parking queue"
            ),
            write_concurrency=env.integer("WRITE_CONCURRENCY", 16, minimum=1, maximum=64),
            tombstone_table=env.optional("TOMBSTONE_TABLE_NAME", pattern=_TABLE_RE, expects="a DynamoDB table name"),
            tombstone_days=env.integer("TOMBSTONE_TTL_DAYS", 8, minimum=2, maximum=365),
            aws_region=env.optional("AWS_REGION", pattern=_REGION_RE, expects="an AWS region"),
        )


def cached_loader(factory: Callable[[Mapping[str, str]], T]) -> Callable[[], T]:
    """A loader that parses the environment once per cold start (tests call `cache_clear`)."""

    @cache
    def load() -> T:
        return factory(os.environ)

    return load


load_replicator_settings = cached_loader(ReplicatorSettings.from_env)


# ---- FULL LOAD (issue 3) ------------------------------------------------------------------------------
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_RE = re.compile(r"^[\w!.*'()/-]{1,200}$")
_FUNCTION_RE = re.compile(r"^[\w-]{1,64}$|^arn:aws(-cn|-us-gov)?:lambda:[a-z0-9-]+:\d{12}:function:[\w-]{1,64}$")
_SECRET_RE = re.compile(r"^[\w/+=.@:-]{1,2048}$")


def _partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


@dataclass(frozen=True)
class PeerKeysSettings:
    """Where the peer partition's access keys live (roles cannot cross aws <-> aws-cn, DESIGN.md §10).

    The secret or SecureString holds JSON: {"accessKeyId": ..., "secretAccessKey": ..., "sessionToken": ...?}.
    Read through Powertools parameters with a cache of `max_age_seconds`, so a rotation needs no redeploy.
    """

    secret_id: str | None
    parameter_name: str | None
    max_age_seconds: int

    @classmethod
    def from_env(cls, env: Env) -> PeerKeysSettings | None:
        """Read PEER_CREDENTIALS_*; None when neither a secret nor a parameter is set."""
        secret = env.optional(
            "PEER_CREDENTIALS_SECRET", pattern=_SECRET_RE, expects="a Secrets Manager secret name or ARN"
        )
        parameter = env.optional(
            "PEER_CREDENTIALS_PARAMETER",
            pattern=_SECRET_RE,
            expects="an SSM SecureString parameter name such as /ddb-bridge/peer-keys",
        )
        if secret and parameter:
            raise SettingsError("PEER_CREDENTIALS_SECRET and PEER_CREDENTIALS_PARAMETER are exclusive: set one")
        if not secret and not parameter:
            return None
        return cls(secret, parameter, env.integer("PEER_CREDENTIALS_MAX_AGE", 300, minimum=0, maximum=3600))


def _peer_for(env: Env, source_region: str, target: TargetSettings) -> PeerKeysSettings | None:
    """Peer keys, required (and the only way) when the target is in another partition."""
    peer = PeerKeysSettings.from_env(env)
    if _partition(source_region) != _partition(target.region):
        if peer is None:
            raise SettingsError(
                f"PEER_CREDENTIALS_SECRET or PEER_CREDENTIALS_PARAMETER is required: the target region "
                f"{target.region} is in another partition than {source_region}, where roles cannot be assumed"
            )
        if target.role_arn:
            raise SettingsError("TARGET_ROLE_ARN must be empty for a cross-partition target: use peer credentials")
    return peer


@dataclass(frozen=True)
class FullLoadSettings:
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

    @property
    def cross_partition(self) -> bool:
        """True when the target lives in another partition (aws <-> aws-cn)."""
        return _partition(self.source_region) != _partition(self.target.region)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> FullLoadSettings:
        """Read every full_load_control setting; raises SettingsError naming the first bad one."""
        env = Env(environ)
        source_region = env.region("AWS_REGION")
        target = TargetSettings.from_env(env)
        peer = _peer_for(env, source_region, target)
        cross = _partition(source_region) != _partition(target.region)
        peer_bucket = env.optional("PEER_BUCKET_NAME", pattern=_BUCKET_RE, expects="an S3 bucket name")
        if cross and not peer_bucket:
            raise SettingsError(
                "PEER_BUCKET_NAME is required for a cross-partition full load: expected the bucket "
                f"in {target.region}'s partition that the export files are copied to"
            )
        return cls(
            source_table=env.table("SOURCE_TABLE_NAME"),
            source_region=source_region,
            target=target,
            peer=peer,
            export_bucket=env.text("EXPORT_BUCKET_NAME", pattern=_BUCKET_RE, expects="an S3 bucket name"),
            export_bucket_owner=env.optional(
                "EXPORT_BUCKET_OWNER",
                pattern=_ACCOUNT_RE,
                expects="the 12-digit account id that owns the export bucket",
            ),
            export_prefix=env.text(
                "EXPORT_PREFIX",
                default="ddb-bridge/full-load",
                pattern=_PREFIX_RE,
                expects="an S3 key prefix such as ddb-bridge/full-load",
            ).strip("/"),
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
            tombstone_table=env.optional("TOMBSTONE_TABLE_NAME", pattern=_TABLE_RE, expects="a DynamoDB table name"),
            progress_table=env.table("BACKFILL_PROGRESS_TABLE"),
            write_concurrency=env.integer("BACKFILL_WRITE_CONCURRENCY", 8, minimum=1, maximum=64),
        )


load_full_load_settings = cached_loader(FullLoadSettings.from_env)
load_backfill_settings = cached_loader(BackfillSettings.from_env)


# ---- BIDIRECTIONAL (issue 4) ----------------------------------------------------------------------------
_REGION_TAG_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_KINESIS_STREAM_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_QUEUE_URL_RE = re.compile(r"^https?://\S+$")


def _region_tag(env: Env) -> str:
    """This side's origin tag: what its writers stamp in the origin attribute (default: the region)."""
    return env.text(
        "LOCAL_REGION_TAG",
        default=env.optional("AWS_REGION") or None,
        pattern=_REGION_TAG_RE,
        expects="the origin tag this region's writers stamp, such as cn-north-1 (1-64 of A-Z a-z 0-9 _ . : -)",
    )


@dataclass(frozen=True)
class RelaySettings:
    """Settings of functions/stream_relay: local stream -> the peer region's Kinesis stream."""

    region_tag: str
    table: str
    tombstone_table: str
    tombstone_days: int
    versions: VersionAttrs
    peer_region: str
    peer_stream: str
    peer_keys: PeerKeysSettings | None
    peer_max_attempts: int
    https_proxy: str | None
    replicate_ttl_deletes: bool
    parking_queue_url: str
    put_attempts: int
    compress: bool
    pack_bytes: int
    pack_buckets: int
    write_concurrency: int
    aws_region: str | None = None  # this function's own region (AWS_REGION, set by Lambda)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RelaySettings:
        """Read every stream_relay setting; raises SettingsError naming the first bad one."""
        env = Env(environ)
        local_region = env.region("AWS_REGION")
        peer_region = env.region("PEER_REGION")
        peer_keys = PeerKeysSettings.from_env(env)
        if _partition(local_region) != _partition(peer_region) and peer_keys is None:
            raise SettingsError(
                f"PEER_CREDENTIALS_SECRET or PEER_CREDENTIALS_PARAMETER is required: PEER_REGION={peer_region} is in "
                f"another partition than {local_region}, where roles cannot be assumed"
            )
        return cls(
            region_tag=_region_tag(env),
            table=env.table("LOCAL_TABLE_NAME"),
            tombstone_table=env.table("TOMBSTONE_TABLE_NAME"),
            tombstone_days=env.integer("TOMBSTONE_TTL_DAYS", 8, minimum=2, maximum=365),
            versions=VersionAttrs.from_env(env),
            peer_region=peer_region,
            peer_stream=env.text(
                "PEER_STREAM_NAME", pattern=_KINESIS_STREAM_RE, expects="the peer region's Kinesis stream name"
            ),
            peer_keys=peer_keys,
            peer_max_attempts=env.integer("PEER_MAX_ATTEMPTS", 3, minimum=1, maximum=20),
            https_proxy=env.optional(
                "HTTPS_PROXY_URL", pattern=_QUEUE_URL_RE, expects="a proxy URL such as http://proxy.internal:3128"
            ),
            replicate_ttl_deletes=env.flag("REPLICATE_TTL_DELETES", True),
            parking_queue_url=env.text(
                "PARKING_QUEUE_URL", pattern=_QUEUE_URL_RE, expects="the URL of the SQS parking queue"
            ),
            put_attempts=env.integer("RELAY_PUT_ATTEMPTS", 8, minimum=1, maximum=20),
            compress=env.flag("RELAY_COMPRESS", True),
            pack_bytes=env.integer("RELAY_PACK_BYTES", 256 * 1024, minimum=1, maximum=4 * 1024 * 1024),
            pack_buckets=env.integer("RELAY_PACK_BUCKETS", 8, minimum=1, maximum=256),
            write_concurrency=env.integer("WRITE_CONCURRENCY", 16, minimum=1, maximum=64),
            aws_region=env.optional("AWS_REGION", pattern=_REGION_RE, expects="an AWS region"),
        )


@dataclass(frozen=True)
class ApplierSettings:
    """Settings of functions/relay_applier: this region's Kinesis stream -> the local table."""

    region_tag: str
    table: str
    tombstone_table: str
    tombstone_days: int
    versions: VersionAttrs
    parking_queue_url: str
    write_concurrency: int
    aws_region: str | None = None  # this function's own region (AWS_REGION, set by Lambda)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ApplierSettings:
        """Read every relay_applier setting; raises SettingsError naming the first bad one."""
        env = Env(environ)
        return cls(
            region_tag=_region_tag(env),
            table=env.table("LOCAL_TABLE_NAME"),
            tombstone_table=env.table("TOMBSTONE_TABLE_NAME"),
            tombstone_days=env.integer("TOMBSTONE_TTL_DAYS", 8, minimum=2, maximum=365),
            versions=VersionAttrs.from_env(env),
            parking_queue_url=env.text(
                "PARKING_QUEUE_URL", pattern=_QUEUE_URL_RE, expects="the URL of the SQS parking queue"
            ),
            write_concurrency=env.integer("WRITE_CONCURRENCY", 16, minimum=1, maximum=64),
            aws_region=env.optional("AWS_REGION", pattern=_REGION_RE, expects="an AWS region"),
        )


load_relay_settings = cached_loader(RelaySettings.from_env)
load_applier_settings = cached_loader(ApplierSettings.from_env)
