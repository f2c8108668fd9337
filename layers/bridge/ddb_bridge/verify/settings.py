"""Settings of functions/verify (statemachine/verify.asl.json)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..core.settings import (
    Env,
    PeerKeysSettings,
    SettingsError,
    TargetSettings,
    VersionAttrs,
    _peer_for,
    cached_loader,
)

VERIFY_MODES = ("ordered", "lww", "bidirectional")
_ATTR_LIST_RE = re.compile(r"^[^,]{1,255}(,[^,]{1,255}){0,99}$")
_ATTR_NAME_RE = re.compile(r"^.{1,255}$", re.S)


@dataclass(frozen=True)
class VerifySettings:
    """Where the two tables are, how they are replicated, and where verify keeps its state and report."""

    source_table: str
    source_region: str
    target: TargetSettings
    peer: PeerKeysSettings | None
    mode: str
    versions: VersionAttrs
    progress_table: str
    report_bucket: str
    report_prefix: str
    ignore_attributes: frozenset[str]
    bridge_attribute: str
    in_flight_seconds: int
    read_concurrency: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> VerifySettings:
        """Read every verify setting; raises SettingsError naming the first bad one."""
        env = Env(environ)
        source_region = env.region("AWS_REGION")
        target = TargetSettings.from_env(env)
        ignore = env.optional(
            "VERIFY_IGNORE_ATTRIBUTES",
            pattern=_ATTR_LIST_RE,
            expects="a comma-separated list of up to 100 attribute names",
        )
        settings = cls(
            source_table=env.table("SOURCE_TABLE_NAME"),
            source_region=source_region,
            target=target,
            peer=_peer_for(env, source_region, target),
            mode=env.choice("VERIFY_MODE", VERIFY_MODES, "ordered"),
            versions=VersionAttrs.from_env(env),
            progress_table=env.table("VERIFY_PROGRESS_TABLE"),
            report_bucket=env.bucket("VERIFY_REPORT_BUCKET"),
            report_prefix=env.key_prefix("VERIFY_REPORT_PREFIX", "ddb-bridge/verify"),
            ignore_attributes=frozenset(n.strip() for n in (ignore or "").split(",") if n.strip()),
            bridge_attribute=env.text(
                "BRIDGE_VERSION_ATTR", default="ddbb_v", pattern=_ATTR_NAME_RE, expects="an attribute name"
            ),
            in_flight_seconds=env.integer("VERIFY_IN_FLIGHT_SECONDS", 300, minimum=1, maximum=86400),
            read_concurrency=env.integer("VERIFY_READ_CONCURRENCY", 8, minimum=1, maximum=64),
        )
        same_place = source_region == target.region and not target.role_arn and settings.peer is None
        if same_place and settings.source_table == settings.target.table:
            raise SettingsError(
                "SOURCE_TABLE_NAME and TARGET_TABLE_NAME name the same table in the same account and region: "
                "verify would compare a table with itself"
            )
        return settings

    @property
    def bridge_attributes(self) -> frozenset[str]:
        """Attributes the bridge itself writes into items, never compared: its version attribute, bidirectional only."""
        return frozenset({self.bridge_attribute}) if self.mode == "bidirectional" else frozenset()


load_verify_settings = cached_loader(VerifySettings.from_env)
