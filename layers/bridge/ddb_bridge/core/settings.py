"""Settings every capability shares: the validating environment reader, version attributes, target and peer access."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

from .clients import partition_of

T = TypeVar("T")

REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
ROLE_ARN_RE = re.compile(r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
TABLE_RE = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
KEY_PREFIX_RE = re.compile(r"^[\w!.*'()/-]{1,200}$")  # where a workflow writes its files in a bucket
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
        return self.text(name, default=default, pattern=REGION_RE, expects="an AWS region such as eu-west-1")

    def table(self, name: str, default: str | None = None) -> str:
        """A DynamoDB table name."""
        return self.text(
            name, default=default, pattern=TABLE_RE, expects="a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)"
        )

    def bucket(self, name: str) -> str:
        """An S3 bucket name."""
        return self.text(name, pattern=BUCKET_RE, expects="an S3 bucket name")

    def key_prefix(self, name: str, default: str) -> str:
        """An S3 key prefix for a workflow's files (its default shown as the example), without outer slashes."""
        return self.text(
            name, default=default, pattern=KEY_PREFIX_RE, expects=f"an S3 key prefix such as {default}"
        ).strip("/")

    def role_arn(self, name: str) -> str | None:
        """An optional IAM role ARN in any partition."""
        return self.optional(
            name,
            pattern=ROLE_ARN_RE,
            expects="an IAM role ARN such as arn:aws:iam::123456789012:role/name (arn:aws-cn:... in China)",
        )


@dataclass(frozen=True)
class VersionAttrs:
    """Names of the attributes that carry an item's version (docs/design.md#versions-and-last-writer-wins)."""

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
    def from_env(cls, env: Env, *, with_table: bool = True) -> TargetSettings:
        """Read TARGET_* and HTTPS_PROXY_URL; `with_table=False` for a target that is a bucket (table empty)."""
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
            table=env.table("TARGET_TABLE_NAME") if with_table else "",
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


def crosses_partition(source_region: str, target: TargetSettings) -> bool:
    """True when the target lives in another partition than the source (aws <-> aws-cn)."""
    return partition_of(source_region) != partition_of(target.region)


class PartitionPair:
    """`cross_partition` for a settings dataclass with a `source_region` and a `target`."""

    source_region: str
    target: TargetSettings

    @property
    def cross_partition(self) -> bool:
        """True when the target lives in another partition (aws <-> aws-cn)."""
        return crosses_partition(self.source_region, self.target)


def cached_loader(factory: Callable[[Mapping[str, str]], T]) -> Callable[[], T]:
    """A loader that parses the environment once per cold start (tests call `cache_clear`)."""

    @cache
    def load() -> T:
        return factory(os.environ)

    return load


SECRET_RE = re.compile(r"^[\w/+=.@:-]{1,2048}$")
PREFIX_RE = re.compile(r"^[\w/.-]{1,1000}/$")
LOG_KEYS = ("plain", "hash")


def log_keys(env: Env) -> str:
    """LOG_KEYS: how item keys appear in logs and error texts, as they are or hashed (values never appear)."""
    return env.choice("LOG_KEYS", LOG_KEYS, "plain")


PEER_KEY_SOURCES = "PEER_CREDENTIALS_SECRET, PEER_CREDENTIALS_PARAMETER or PEER_CREDENTIALS_PARAMETER_PREFIX"


@dataclass(frozen=True)
class PeerKeysSettings:
    """Where the peer partition's access keys live (roles cannot cross aws <-> aws-cn, docs/design.md#credentials).

    One of: a secret or a SecureString holding JSON {"accessKeyId": ..., "secretAccessKey": ...,
    "sessionToken": ...?}; or, as the public China <-> Global sample keeps them, two parameters under a
    prefix: `<prefix>AccessKey` (String) and `<prefix>SecretKey` (SecureString). Read through Powertools
    parameters with a cache of `max_age_seconds`, so a rotation needs no redeploy.
    """

    secret_id: str | None
    parameter_name: str | None
    max_age_seconds: int
    parameter_prefix: str | None = None

    @classmethod
    def from_env(cls, env: Env) -> PeerKeysSettings | None:
        """Read PEER_CREDENTIALS_*; None when no source of keys is set."""
        secret = env.optional(
            "PEER_CREDENTIALS_SECRET", pattern=SECRET_RE, expects="a Secrets Manager secret name or ARN"
        )
        parameter = env.optional(
            "PEER_CREDENTIALS_PARAMETER",
            pattern=SECRET_RE,
            expects="an SSM SecureString parameter name such as /ddb-bridge/peer-keys",
        )
        prefix = env.optional(
            "PEER_CREDENTIALS_PARAMETER_PREFIX",
            pattern=PREFIX_RE,
            expects="an SSM parameter path ending in / such as /DDBReplication/TableCN/ "
            "(holding AccessKey and SecretKey)",
        )
        chosen = [
            name
            for name, value in (("SECRET", secret), ("PARAMETER", parameter), ("PARAMETER_PREFIX", prefix))
            if value
        ]
        if len(chosen) > 1:
            raise SettingsError(
                " and ".join(f"PEER_CREDENTIALS_{name}" for name in chosen) + " are exclusive: set only one"
            )
        if not chosen:
            return None
        max_age = env.integer("PEER_CREDENTIALS_MAX_AGE", 300, minimum=0, maximum=3600)
        return cls(secret, parameter, max_age, prefix)


def _peer_for(env: Env, source_region: str, target: TargetSettings) -> PeerKeysSettings | None:
    """Peer keys, required (and the only way) when the target is in another partition."""
    peer = PeerKeysSettings.from_env(env)
    if crosses_partition(source_region, target):
        if peer is None:
            raise SettingsError(
                f"{PEER_KEY_SOURCES} is required: the target region "
                f"{target.region} is in another partition than {source_region}, where roles cannot be assumed"
            )
        if target.role_arn:
            raise SettingsError("TARGET_ROLE_ARN must be empty for a cross-partition target: use peer credentials")
    return peer


URL_RE = re.compile(r"^https?://\S+$")
