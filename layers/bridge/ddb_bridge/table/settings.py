"""Settings of functions/table_replicator."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..core.settings import (
    MODES,
    REGION_RE,
    TABLE_RE,
    Env,
    TargetSettings,
    VersionAttrs,
    cached_loader,
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
            tombstone_table=env.optional("TOMBSTONE_TABLE_NAME", pattern=TABLE_RE, expects="a DynamoDB table name"),
            tombstone_days=env.integer("TOMBSTONE_TTL_DAYS", 8, minimum=2, maximum=365),
            aws_region=env.optional("AWS_REGION", pattern=REGION_RE, expects="an AWS region"),
        )


load_replicator_settings = cached_loader(ReplicatorSettings.from_env)
