"""Settings of the S3 capability: the two buckets, how to reach the target, and how objects are copied."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..core.settings import (
    TABLE_RE,
    URL_RE,
    Env,
    PartitionPair,
    PeerKeysSettings,
    SettingsError,
    TargetSettings,
    _peer_for,
    cached_loader,
    crosses_partition,
)

MIB = 1024 * 1024
GIB = 1024 * MIB
MAX_SINGLE_COPY = 5 * GIB  # CopyObject's limit; above it S3 needs UploadPartCopy
MIN_PART = 5 * MIB  # S3's smallest part (but the last)
MAX_PARTS = 10_000

_PREFIX_RE = re.compile(r"^[^\x00-\x1f]{0,512}$")
_KMS_RE = re.compile(
    r"^(arn:aws(-cn|-us-gov)?:kms:[a-z0-9-]+:\d{12}:(key|alias)/[\w/+=,.@-]+|alias/[\w/+=,.@-]+|[\w-]{1,128})$"
)
STORAGE_CLASSES = (
    "SAME",
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY",
)
COPY_MODES = ("auto", "server", "stream")


@dataclass(frozen=True)
class CopyOptions:
    """How objects are copied (shared by the replicator, the backfill and the full load's export copy)."""

    server_side: bool  # CopyObject / UploadPartCopy (one principal reads the source and writes the target)
    part_size: int = 64 * MIB
    single_max: int = MAX_SINGLE_COPY  # server side: CopyObject up to this size, UploadPartCopy above
    inline_max: int = 2 * GIB  # the largest object one invocation copies; larger ones are split into part ranges
    parts_per_task: int = 32  # parts one task of a split copy handles
    copy_tags: bool = True
    storage_class: str | None = None  # None: the source object's class
    kms_key_id: str | None = None  # for objects encrypted with SSE-KMS at the source
    concurrency: int = 8

    def part_size_for(self, size: int) -> int:
        """The part size for an object: the setting, grown so no object needs more than 10,000 parts."""
        part = max(MIN_PART, self.part_size)
        while size > part * MAX_PARTS:
            part *= 2
        return part

    def is_multipart(self, size: int) -> bool:
        """True when the object is copied part by part (UploadPartCopy, or ranged GET -> UploadPart)."""
        return size > (self.single_max if self.server_side else self.part_size)

    @classmethod
    def from_env(cls, env: Env, *, same_partition: bool) -> CopyOptions:
        """Read COPY_MODE, PART_SIZE_MB, SINGLE_COPY_MAX_MB, INLINE_MAX_MB, COPY_TAGS, TARGET_STORAGE_CLASS..."""
        mode = env.choice("COPY_MODE", COPY_MODES, "auto")
        if mode == "server" and not same_partition:
            raise SettingsError("COPY_MODE=server is impossible across partitions: expected auto or stream")
        storage = env.text("TARGET_STORAGE_CLASS", default="SAME").upper()
        if storage not in STORAGE_CLASSES:
            raise SettingsError(
                f"TARGET_STORAGE_CLASS={storage!r} is invalid: expected one of {', '.join(STORAGE_CLASSES)}"
            )
        return cls(
            server_side=mode == "server" or (mode == "auto" and same_partition),
            part_size=env.integer("PART_SIZE_MB", 64, minimum=5, maximum=5120) * MIB,
            single_max=env.integer("SINGLE_COPY_MAX_MB", 5120, minimum=5, maximum=5120) * MIB,
            inline_max=env.integer("INLINE_MAX_MB", 2048, minimum=5, maximum=1024 * 1024) * MIB,
            parts_per_task=env.integer("PARTS_PER_TASK", 32, minimum=1, maximum=MAX_PARTS),
            copy_tags=env.flag("COPY_TAGS", True),
            storage_class=None if storage == "SAME" else storage,
            kms_key_id=env.optional(
                "TARGET_KMS_KEY_ID", pattern=_KMS_RE, expects="a KMS key id, key ARN or alias in the target"
            ),
            concurrency=env.integer("COPY_CONCURRENCY", 8, minimum=1, maximum=64),
        )


@dataclass(frozen=True)
class BucketPair:
    """The source bucket (this account), the target bucket, and the key prefix mapping between them."""

    source_bucket: str
    target_bucket: str
    source_prefix: str = ""
    target_prefix: str = ""

    @classmethod
    def from_env(cls, env: Env) -> BucketPair:
        """Read SOURCE_BUCKET_NAME, TARGET_BUCKET_NAME, SOURCE_PREFIX, TARGET_PREFIX."""
        return cls(
            source_bucket=env.bucket("SOURCE_BUCKET_NAME"),
            target_bucket=env.bucket("TARGET_BUCKET_NAME"),
            source_prefix=env.optional("SOURCE_PREFIX", pattern=_PREFIX_RE, expects="a key prefix") or "",
            target_prefix=env.optional("TARGET_PREFIX", pattern=_PREFIX_RE, expects="a key prefix") or "",
        )


@dataclass(frozen=True)
class BucketSettings(PartitionPair):
    """Settings of functions/bucket_replicator and functions/bucket_backfill."""

    buckets: BucketPair
    source_region: str
    target: TargetSettings
    peer: PeerKeysSettings | None
    copy: CopyOptions
    parking_queue_url: str | None
    work_queue_url: str | None  # the replicator's own queue: part ranges of split copies go there
    sequencer_table: str | None
    sequencer_ttl_days: int
    progress_table: str | None
    eventbridge_keys_encoded: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> BucketSettings:
        """Read every S3 setting; raises SettingsError naming the first bad one."""
        env = Env(environ)
        source_region = env.region("AWS_REGION")
        target = TargetSettings.from_env(env, with_table=False)
        peer = _peer_for(env, source_region, target)
        return cls(
            buckets=BucketPair.from_env(env),
            source_region=source_region,
            target=target,
            peer=peer,
            copy=CopyOptions.from_env(env, same_partition=not crosses_partition(source_region, target)),
            parking_queue_url=env.optional("PARKING_QUEUE_URL", pattern=URL_RE, expects="an SQS queue URL"),
            work_queue_url=env.optional("WORK_QUEUE_URL", pattern=URL_RE, expects="an SQS queue URL"),
            sequencer_table=env.optional("SEQUENCER_TABLE_NAME", pattern=TABLE_RE, expects="a DynamoDB table name"),
            sequencer_ttl_days=env.integer("SEQUENCER_TTL_DAYS", 15, minimum=1, maximum=365),
            progress_table=env.optional("BACKFILL_PROGRESS_TABLE", pattern=TABLE_RE, expects="a DynamoDB table name"),
            eventbridge_keys_encoded=env.flag("EVENTBRIDGE_KEYS_URL_ENCODED", True),
        )

    def require_replicator(self) -> BucketSettings:
        """The replicator needs a parking queue; raises SettingsError otherwise."""
        if not self.parking_queue_url:
            raise SettingsError("PARKING_QUEUE_URL is required: expected the URL of the SQS parking queue")
        return self

    def require_backfill(self) -> BucketSettings:
        """The backfill needs its progress table; raises SettingsError otherwise."""
        if not self.progress_table:
            raise SettingsError("BACKFILL_PROGRESS_TABLE is required: expected the backfill's progress table")
        return self


load_bucket_settings = cached_loader(BucketSettings.from_env)
