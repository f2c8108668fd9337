"""boto3 clients for the target side: assumed-role sessions cached until shortly before expiry.

botocore's `DeferredRefreshableCredentials` calls AssumeRole once, then again only when the
credentials come within 15 minutes of expiry, so a warm Lambda makes one STS call per hour,
not one per invocation. Adaptive retries back off on throttling inside botocore.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import DeferredRefreshableCredentials

ASSUME_ROLE_SECONDS = 3600


def partition_of(region: str) -> str:
    """The AWS partition of a region: aws, aws-cn or aws-us-gov."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def arn(service: str, region: str, account: str, resource: str) -> str:
    """An ARN in the region's partition (China regions are `aws-cn`)."""
    return f"arn:{partition_of(region)}:{service}:{region}:{account}:{resource}"


def client_config(
    *,
    max_attempts: int = 8,
    https_proxy: str | None = None,
    pool: int = 10,
    connect_timeout: float = 3.0,
    read_timeout: float = 10.0,
) -> Config:
    """Botocore configuration: adaptive retries, bounded timeouts, optional HTTPS proxy."""
    return Config(
        retries={"mode": "adaptive", "max_attempts": max_attempts},
        proxies={"https": https_proxy} if https_proxy else None,
        max_pool_connections=pool,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        tcp_keepalive=True,
    )


def assumed_role_session(
    role_arn: str,
    external_id: str | None,
    region: str,
    *,
    session_name: str = "ddb-bridge",
    sts_client: Any | None = None,
    duration_seconds: int = ASSUME_ROLE_SECONDS,
) -> boto3.Session:
    """A boto3 session whose credentials come from STS AssumeRole and refresh themselves."""
    # Regional STS endpoint (botocore's default): the global one does not exist in aws-cn.
    sts = sts_client or boto3.client("sts", region_name=region)

    def refresh() -> dict[str, str]:
        kwargs: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": session_name,
            "DurationSeconds": duration_seconds,
        }
        if external_id:
            kwargs["ExternalId"] = external_id
        creds = sts.assume_role(**kwargs)["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    core = botocore.session.get_session()
    core._credentials = DeferredRefreshableCredentials(refresh_using=refresh, method="sts-assume-role")
    core.set_config_variable("region", region)
    return boto3.Session(botocore_session=core)


def static_key_session(
    access_key: str, secret_key: str, region: str, session_token: str | None = None
) -> boto3.Session:
    """A session from long-lived keys (cross-partition peers, where roles cannot cross)."""
    return boto3.Session(
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=session_token,
        region_name=region,
    )


@dataclass
class TargetClients:
    """The clients that write to the target side, sharing one refreshable session."""

    session: boto3.Session
    dynamodb: Any


class SessionCache:
    """One target session per cold start; `invalidate()` after a credential error forces a new one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: TargetClients | None = None

    def get(self, *, region: str, role_arn: str | None, external_id: str | None, config: Config) -> TargetClients:
        """The cached clients, building them on first use."""
        with self._lock:
            if self._clients is None:
                if role_arn:
                    session = assumed_role_session(role_arn, external_id, region)
                else:
                    session = boto3.Session(region_name=region)
                self._clients = TargetClients(
                    session=session, dynamodb=session.client("dynamodb", region_name=region, config=config)
                )
            return self._clients

    def current(self) -> TargetClients | None:
        """The cached clients, if any (tests inject faults into them)."""
        return self._clients

    def invalidate(self) -> None:
        """Forget the session: the next call assumes the role again."""
        with self._lock:
            self._clients = None


target_sessions = SessionCache()
