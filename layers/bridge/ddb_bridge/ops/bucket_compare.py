"""`ddb-bridge bucket-compare`: whether two buckets hold the same keys with the same content.

It wraps `ddb_bridge.s3.compare.compare_buckets` (read-only). With `--stack-name` the buckets, their prefixes
and the target's region default to what the stack's bucket replicator replicates (output
`BucketReplicatorFunctionName`, read from its environment, as the function reads it); explicit options
override each. The source is read with the operator's credentials (`--profile`, `--region`); the target
with `--target-profile` (another account or partition), `--target-role-arn` (a role the operator may
assume), else the operator's own credentials.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3

from ..core.clients import assumed_role_session, client_config, partition_of
from ..s3.compare import CompareReport
from ..s3.settings import BucketPair
from .console import UsageError

BUCKET_REPLICATOR = "BucketReplicatorFunctionName"


@dataclass(frozen=True)
class StackBuckets:
    """What the stack's bucket replicator replicates (its environment)."""

    source_bucket: str | None
    target_bucket: str | None
    source_prefix: str
    target_prefix: str
    target_region: str | None
    target_role_arn: str | None  # the stack writes the target through this role (another account)
    peer_keys: bool  # the stack reaches the target with the other partition's keys


def stack_buckets(lambda_client: Any, function: str) -> StackBuckets:
    """The bucket pair the stack's replicator works on, from its configuration (GetFunctionConfiguration)."""
    config = lambda_client.get_function_configuration(FunctionName=function)
    env = (config.get("Environment") or {}).get("Variables") or {}
    return StackBuckets(
        source_bucket=env.get("SOURCE_BUCKET_NAME") or None,
        target_bucket=env.get("TARGET_BUCKET_NAME") or None,
        source_prefix=env.get("SOURCE_PREFIX") or "",
        target_prefix=env.get("TARGET_PREFIX") or "",
        target_region=env.get("TARGET_REGION") or None,
        target_role_arn=env.get("TARGET_ROLE_ARN") or None,
        peer_keys=bool(env.get("PEER_CREDENTIALS_SECRET")),
    )


@dataclass(frozen=True)
class Sides:
    """Both buckets and how each is read."""

    pair: BucketPair
    source_region: str
    target_region: str
    source_s3: Any
    target_s3: Any
    target_access: str  # how the target is read, for the report: "--target-profile cn", "your credentials", ...
    own_credentials: bool  # the target is read with the operator's own credentials


def s3_client(session: boto3.Session, region: str) -> Any:
    """An S3 client of `session` in `region`, with the bridge's retries and a pool for the parallel ranges."""
    return session.client("s3", region_name=region, config=client_config(max_attempts=8, pool=32))


def sides(
    source_session: boto3.Session,
    *,
    source_bucket: str | None,
    target_bucket: str | None,
    source_prefix: str | None,
    target_prefix: str | None,
    target_region: str | None,
    target_profile: str | None,
    target_role_arn: str | None,
    external_id: str | None,
    stack: StackBuckets | None,
) -> Sides:
    """Both sides from the options, the stack's replicator filling in what they leave out."""
    source_region = str(source_session.region_name)
    source = source_bucket or (stack.source_bucket if stack else None)
    target = target_bucket or (stack.target_bucket if stack else None)
    if not source or not target:
        raise UsageError(
            "give --source-bucket and --target-bucket, or --stack-name of a stack that replicates a bucket "
            "(output BucketReplicatorFunctionName)"
        )
    pair = BucketPair(
        source,
        target,
        source_prefix if source_prefix is not None else (stack.source_prefix if stack else ""),
        target_prefix if target_prefix is not None else (stack.target_prefix if stack else ""),
    )
    region = target_region or (stack.target_region if stack else None) or source_region
    if target_profile and target_role_arn:
        raise UsageError("give --target-profile or --target-role-arn, not both")
    if target_profile:
        session = boto3.Session(profile_name=target_profile, region_name=region)
        access, own = f"--target-profile {target_profile}", False
    elif target_role_arn:
        session = assumed_role_session(
            target_role_arn,
            external_id,
            region,
            session_name="ddb-bridge-bucket-compare",
            sts_client=source_session.client("sts", region_name=source_region),
        )
        access, own = f"role {target_role_arn}", False
    else:
        if partition_of(region) != partition_of(source_region) or (stack is not None and stack.peer_keys):
            raise UsageError(
                f"the target bucket {target} is in {region}, another partition than {source_region}: give "
                "--target-profile with credentials of that partition"
            )
        session, access, own = source_session, "your credentials", True
    return Sides(
        pair, source_region, region, s3_client(source_session, source_region), s3_client(session, region), access, own
    )


def location(bucket: str, prefix: str, region: str) -> str:
    """s3://bucket/prefix (region)."""
    return f"s3://{bucket}/{prefix} ({region})"


def render(report: CompareReport, s: Sides, *, samples: int = 5) -> list[str]:
    """The compare as text: both sides, the counts, the verdict, a few keys of each kind."""
    p = s.pair
    lines = [
        f"bucket compare {location(p.source_bucket, p.source_prefix, s.source_region)} -> "
        f"{location(p.target_bucket, p.target_prefix, s.target_region)}, target read with {s.target_access}",
        f"  compared {report.objects:,} objects ({report.bytes:,} bytes) in {report.ranges} key ranges: "
        f"{report.missing:,} missing, {report.extra:,} extra, {report.different:,} different",
        f"  equal: {'yes' if report.ok else 'NO'}",
    ]
    for kind, keys in report.samples.items():
        if keys:
            shown = ", ".join(json.dumps(k, ensure_ascii=False) for k in keys[:samples])
            lines.append(f"  {kind}: {shown}{' ...' if getattr(report, kind) > samples else ''}")
    return lines
