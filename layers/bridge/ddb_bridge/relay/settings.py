"""Settings of functions/stream_relay and functions/relay_applier."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..core.clients import partition_of
from ..core.settings import (
    PEER_KEY_SOURCES,
    REGION_RE,
    URL_RE,
    Env,
    PeerKeysSettings,
    SettingsError,
    VersionAttrs,
    cached_loader,
    log_keys,
)
from .packs import DEFAULT_MAX_PACK_BYTES
from .states import BRIDGE, STAMP_MODES, Versions

# ---- bidirectional -------------------------------------------------------------------------------------
_REGION_TAG_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_KINESIS_STREAM_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_ATTR_NAME_RE = re.compile(r"^.{1,255}$")


def _clock_skew(env: Env) -> int:
    """How far ahead of this region's clock a version may be stamped before it is parked (seconds)."""
    return env.integer("MAX_CLOCK_SKEW_SECONDS", 300, minimum=1, maximum=7 * 86400)


def _versions(env: Env) -> Versions:
    """STAMP_MODE (bridge: the bridge versions every change; application: writers stamp) and the bridge's attribute."""
    attrs = VersionAttrs.from_env(env)
    mode = env.choice("STAMP_MODE", STAMP_MODES, BRIDGE)
    bridge_attr = env.text(
        "BRIDGE_VERSION_ATTR", default="ddbb_v", pattern=_ATTR_NAME_RE, expects="an attribute name (1-255 characters)"
    )
    if bridge_attr in (attrs.ts, attrs.origin):
        raise SettingsError("BRIDGE_VERSION_ATTR must differ from VERSION_TS_ATTR and VERSION_ORIGIN_ATTR")
    return Versions(mode, attrs, bridge_attr)


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
    stamps: Versions
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
    max_clock_skew_seconds: int = 300
    log_keys: str = "plain"
    aws_region: str | None = None  # this function's own region (AWS_REGION, set by Lambda)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RelaySettings:
        """Read every stream_relay setting; raises SettingsError naming the first bad one."""
        env = Env(environ)
        local_region = env.region("AWS_REGION")
        peer_region = env.region("PEER_REGION")
        peer_keys = PeerKeysSettings.from_env(env)
        if partition_of(local_region) != partition_of(peer_region) and peer_keys is None:
            raise SettingsError(
                f"{PEER_KEY_SOURCES} is required: PEER_REGION={peer_region} is in "
                f"another partition than {local_region}, where roles cannot be assumed"
            )
        return cls(
            region_tag=_region_tag(env),
            table=env.table("LOCAL_TABLE_NAME"),
            tombstone_table=env.table("TOMBSTONE_TABLE_NAME"),
            tombstone_days=env.integer("TOMBSTONE_TTL_DAYS", 8, minimum=2, maximum=365),
            versions=VersionAttrs.from_env(env),
            stamps=_versions(env),
            peer_region=peer_region,
            peer_stream=env.text(
                "PEER_STREAM_NAME", pattern=_KINESIS_STREAM_RE, expects="the peer region's Kinesis stream name"
            ),
            peer_keys=peer_keys,
            peer_max_attempts=env.integer("PEER_MAX_ATTEMPTS", 3, minimum=1, maximum=20),
            https_proxy=env.optional(
                "HTTPS_PROXY_URL", pattern=URL_RE, expects="a proxy URL such as http://proxy.internal:3128"
            ),
            replicate_ttl_deletes=env.flag("REPLICATE_TTL_DELETES", True),
            parking_queue_url=env.text("PARKING_QUEUE_URL", pattern=URL_RE, expects="the URL of the SQS parking queue"),
            put_attempts=env.integer("RELAY_PUT_ATTEMPTS", 8, minimum=1, maximum=20),
            compress=env.flag("RELAY_COMPRESS", True),
            pack_bytes=env.integer("RELAY_PACK_BYTES", 256 * 1024, minimum=1, maximum=4 * 1024 * 1024),
            pack_buckets=env.integer("RELAY_PACK_BUCKETS", 8, minimum=1, maximum=256),
            write_concurrency=env.integer("WRITE_CONCURRENCY", 16, minimum=1, maximum=64),
            max_clock_skew_seconds=_clock_skew(env),
            log_keys=log_keys(env),
            aws_region=env.optional("AWS_REGION", pattern=REGION_RE, expects="an AWS region"),
        )


@dataclass(frozen=True)
class ApplierSettings:
    """Settings of functions/relay_applier: this region's Kinesis stream -> the local table."""

    region_tag: str
    table: str
    tombstone_table: str
    tombstone_days: int
    versions: VersionAttrs
    stamps: Versions
    parking_queue_url: str
    write_concurrency: int
    max_clock_skew_seconds: int = 300
    max_pack_bytes: int = DEFAULT_MAX_PACK_BYTES
    log_keys: str = "plain"
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
            stamps=_versions(env),
            parking_queue_url=env.text("PARKING_QUEUE_URL", pattern=URL_RE, expects="the URL of the SQS parking queue"),
            write_concurrency=env.integer("WRITE_CONCURRENCY", 16, minimum=1, maximum=64),
            max_clock_skew_seconds=_clock_skew(env),
            max_pack_bytes=env.integer(
                "RELAY_MAX_PACK_BYTES", DEFAULT_MAX_PACK_BYTES, minimum=1024 * 1024, maximum=64 * 1024 * 1024
            ),
            log_keys=log_keys(env),
            aws_region=env.optional("AWS_REGION", pattern=REGION_RE, expects="an AWS region"),
        )


load_relay_settings = cached_loader(RelaySettings.from_env)
load_applier_settings = cached_loader(ApplierSettings.from_env)
