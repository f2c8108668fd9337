"""Sessions on the target side of a full load or backfill: an assumed role, or peer keys across partitions.

Same partition: STS AssumeRole with ExternalId (botocore refreshes it before expiry). Cross-partition
(aws <-> aws-cn), where roles cannot cross: access keys of the peer account read from Secrets Manager,
an SSM SecureString (JSON), or two SSM parameters `<prefix>AccessKey` and `<prefix>SecretKey` (the
public China <-> Global sample's layout), through Powertools parameters, cached for `max_age` seconds
so a rotation is picked up without a redeploy; a credential error forces a fresh read
(docs/design.md#credentials). Keys that cannot be read or are malformed are an operator's to fix:
a retryable error counted as `NonRetryableFailures`, never a parked record.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from aws_lambda_powertools.utilities import parameters

from .clients import assumed_role_session, client_config, static_key_session
from .errors import RetryableError
from .settings import PeerKeysSettings, TargetSettings


class PeerKeys:
    """Reads the peer partition's keys from a secret, a SecureString or two parameters, with Powertools' cache."""

    def __init__(self, settings: PeerKeysSettings, provider: Any | None = None) -> None:
        self.settings = settings
        if provider is not None:
            self.provider = provider
        elif settings.secret_id:
            self.provider = parameters.SecretsProvider()
        else:
            self.provider = parameters.SSMProvider()

    @property
    def source(self) -> str:
        """Where the keys live, for messages."""
        if self.settings.secret_id:
            return f"secret {self.settings.secret_id}"
        if self.settings.parameter_prefix:
            prefix = self.settings.parameter_prefix
            return f"parameters {prefix}AccessKey and {prefix}SecretKey"
        return f"parameter {self.settings.parameter_name}"

    def _get(self, name: str, *, force: bool, transform: str | None) -> Any:
        options: dict[str, Any] = {"max_age": self.settings.max_age_seconds, "force_fetch": force}
        if transform:
            options["transform"] = transform
        if not self.settings.secret_id:
            options["decrypt"] = True
        try:
            return self.provider.get(name, **options)
        except parameters.exceptions.TransformParameterError:
            raise RetryableError("PeerKeysMalformed", f"{self.source} is not JSON") from None
        except parameters.exceptions.GetParameterError as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "an error"
            raise RetryableError("PeerKeysUnreadable", f"could not read {self.source} ({cause})") from exc

    def read(self, *, force: bool = False) -> dict[str, str]:
        """The keys as {accessKeyId, secretAccessKey, sessionToken?}; RetryableError when unusable."""
        prefix = self.settings.parameter_prefix
        if prefix:
            access = self._get(prefix + "AccessKey", force=force, transform=None)
            secret = self._get(prefix + "SecretKey", force=force, transform=None)
            if not isinstance(access, str) or not access.strip() or not isinstance(secret, str) or not secret.strip():
                raise RetryableError("PeerKeysMalformed", f"{self.source} must both hold a non-empty value")
            return {"accessKeyId": access.strip(), "secretAccessKey": secret.strip()}
        name = self.settings.secret_id or self.settings.parameter_name
        assert name is not None
        value = self._get(name, force=force, transform="json")
        if not isinstance(value, dict) or not value.get("accessKeyId") or not value.get("secretAccessKey"):
            raise RetryableError(
                "PeerKeysMalformed",
                f'{self.source} must hold JSON {{"accessKeyId": "...", "secretAccessKey": "..."}} '
                '(optionally "sessionToken")',
            )
        return {k: str(v) for k, v in value.items() if k in ("accessKeyId", "secretAccessKey", "sessionToken") and v}


class TargetAccess:
    """Builds and caches the target-side session; `refresh()` after a credential error."""

    def __init__(self, target: TargetSettings, peer: PeerKeys | None, *, sts_client: Any | None = None) -> None:
        self.target = target
        self.peer = peer
        self._sts = sts_client
        self._lock = threading.Lock()
        self._session: boto3.Session | None = None
        self._key_id: str | None = None

    @classmethod
    def of(cls, target: TargetSettings, peer: PeerKeysSettings | None) -> TargetAccess:
        """The access a function's settings describe: peer keys where they are set, else a role or its own."""
        return cls(target, PeerKeys(peer) if peer else None)

    def session(self) -> boto3.Session:
        """The current session (assumed role, peer keys, or this function's own credentials)."""
        with self._lock:
            if self.peer is not None:
                keys = self.peer.read()
                if self._session is None or keys["accessKeyId"] != self._key_id:  # rotated: new session
                    self._key_id = keys["accessKeyId"]
                    self._session = static_key_session(
                        keys["accessKeyId"], keys["secretAccessKey"], self.target.region, keys.get("sessionToken")
                    )
            elif self._session is None:
                if self.target.role_arn:
                    self._session = assumed_role_session(
                        self.target.role_arn,
                        self.target.external_id,
                        self.target.region,
                        session_name="ddb-bridge-loader",
                        sts_client=self._sts,
                    )
                else:
                    self._session = boto3.Session(region_name=self.target.region)
            return self._session

    def client(self, service: str, *, pool: int = 10) -> Any:
        """A client of the target region on the current session."""
        config = client_config(max_attempts=self.target.max_attempts, https_proxy=self.target.https_proxy, pool=pool)
        return self.session().client(service, region_name=self.target.region, config=config)

    def refresh(self) -> None:
        """Forget the session (and re-read peer keys): the next call authenticates afresh."""
        with self._lock:
            self._session = None
            self._key_id = None
        if self.peer is not None:
            self.peer.read(force=True)
