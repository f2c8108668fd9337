"""`ddb-bridge bucket-compare` against moto: the stack's bucket pair by default, any two buckets explicitly.

The equal / different verdicts go through the installed console script (and `python -m ddb_bridge.s3.compare`,
the same command), as an operator runs them; the usage and failure paths through `main` in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from ddb_bridge.ops import bucket_compare
from ddb_bridge.ops.cli import ERROR, NOT_OK, OK, USAGE, main
from harness.faults import S3Fault, inject
from harness.lambda_bridge import BRIDGE
from harness.load_world import peer_session
from harness.operator_world import deploy_stack, write_profile
from harness.s3_world import BucketWorld, bucket_world
from harness.world import EXTERNAL_ID, SOURCE_REGION, TARGET_ROLE_ARN

ROOT = Path(__file__).resolve().parents[2]
PROFILE = "ddb-bridge-bucket-target"


def seed(world: BucketWorld, n: int, *, copy: bool = True) -> dict[str, bytes]:
    """n objects in the source (under a/, b/ and c/), and the same ones in the target when `copy`."""
    objects = {}
    for i in range(n):
        key = f"{'abc'[i % 3]}/{i:03d} file+{i}.txt"
        body = f"object {i} ".encode() * (1 + i % 5)
        world.put(key, body, Metadata={"n": str(i)})
        if copy:
            world.target.put_object(Bucket=world.target_bucket, Key=key, Body=body, Metadata={"n": str(i)})
        objects[key] = body
    return objects


def stack_of(world: BucketWorld) -> str:
    """A stack whose output BucketReplicatorFunctionName names the deployed replicator of `world`'s buckets."""
    function = f"{world.name}-BucketReplicator"
    BRIDGE.deploy(
        "bucket_replicator", world.env(), function_name=function, lambda_client=boto3.client("lambda"), warm=0
    )
    stack = f"ddb-bridge-{world.name}"
    deploy_stack(stack, {"BucketReplicatorFunctionName": function}, {})
    return stack


def console(*args: str, module: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed `ddb-bridge` script (or `python -m ddb_bridge.s3.compare`), as an operator runs it."""
    script = Path(sys.executable).parent / "ddb-bridge"
    command = (
        [sys.executable, "-m", "ddb_bridge.s3.compare", *args] if module else [str(script), "bucket-compare", *args]
    )
    path = os.pathsep.join([str(ROOT / "layers" / "bridge"), str(ROOT)])
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": path, **env}
    )


def cli(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(["bucket-compare", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_stacks_buckets_equal_then_a_missing_an_extra_and_a_changed_object(aws, tmp_path):
    # GIVEN a stack replicating a bucket into another account, both buckets holding the same 18 objects, and
    # the operator's profile of the target account
    world = bucket_world(notify=False)
    objects = seed(world, 18)
    stack = stack_of(world)
    credentials = tmp_path / "credentials"
    write_profile(credentials, PROFILE, world.target_session)
    profile = {"AWS_SHARED_CREDENTIALS_FILE": str(credentials)}

    # WHEN the operator compares, naming only the stack (and how to read the target)
    equal = console("--stack-name", stack, "--target-profile", PROFILE, **profile)

    # THEN the buckets, the target's region and the verdict come from the stack's replicator: equal, exit 0
    assert equal.returncode == OK, equal.stderr
    assert f"s3://{world.source_bucket}/ ({SOURCE_REGION}) -> s3://{world.target_bucket}/ ({world.target_region})" in (
        equal.stdout
    )
    assert "compared 18 objects" in equal.stdout and "0 missing, 0 extra, 0 different" in equal.stdout
    assert "equal: yes" in equal.stdout

    # WHEN the target loses one object, holds another with other bytes of the same size, and gains one
    keys = sorted(objects)
    world.target.delete_object(Bucket=world.target_bucket, Key=keys[3])
    world.target.put_object(Bucket=world.target_bucket, Key=keys[7], Body=bytes(len(objects[keys[7]])))
    world.target.put_object(Bucket=world.target_bucket, Key="c/zz extra", Body=b"?")
    text = console("--stack-name", stack, "--target-profile", PROFILE, **profile)
    as_json = console("--stack-name", stack, "--target-profile", PROFILE, "--json", "--ranges", "3", **profile)

    # THEN exit 1, with each kind's keys
    assert text.returncode == as_json.returncode == NOT_OK, text.stderr + as_json.stderr
    assert "1 missing, 1 extra, 1 different" in text.stdout and "equal: NO" in text.stdout
    assert f'missing: "{keys[3]}"' in text.stdout and 'extra: "c/zz extra"' in text.stdout
    assert f'different: "{keys[7]}"' in text.stdout
    report = json.loads(as_json.stdout)
    assert (report["missing"], report["extra"], report["different"], report["objects"]) == (1, 1, 1, 18)
    assert report["samples"] == {"missing": [keys[3]], "extra": ["c/zz extra"], "different": [keys[7]]}
    assert report["ok"] is False and report["target_region"] == world.target_region

    # AND `python -m ddb_bridge.s3.compare` is the same command
    module = console("--stack-name", stack, "--target-profile", PROFILE, "--json", module=True, **profile)
    assert module.returncode == NOT_OK and json.loads(module.stdout)["samples"] == report["samples"]


def test_any_two_buckets_with_a_prefix_mapping_and_an_assumed_role(aws, capsys):
    # GIVEN target keys under another prefix: mirror/<key after a/>
    world = bucket_world(notify=False)
    for key, body in seed(world, 9, copy=False).items():
        if key.startswith("a/"):
            world.target.put_object(Bucket=world.target_bucket, Key="mirror/" + key.removeprefix("a/"), Body=body)
    explicit = [
        "--source-bucket",
        world.source_bucket,
        "--target-bucket",
        world.target_bucket,
        "--target-region",
        world.target_region,
        "--target-role-arn",
        TARGET_ROLE_ARN,
        "--external-id",
        EXTERNAL_ID,
    ]
    # WHEN a/ is compared with mirror/, reading the target through a role: equal
    code, out, _ = cli(capsys, *explicit, "--source-prefix", "a/", "--target-prefix", "mirror/")
    assert code == OK and "compared 3 objects" in out and "target read with role " in out
    assert f"s3://{world.target_bucket}/mirror/ ({world.target_region})" in out
    # AND the whole source against the whole target is not: every source key is missing there, and mirror/ is extra
    code, out, _ = cli(capsys, *explicit, "--json")
    report = json.loads(out)
    assert code == NOT_OK and (report["missing"], report["extra"], report["objects"]) == (9, 3, 9)


def test_the_other_partition_needs_its_credentials(aws, capsys, tmp_path, monkeypatch):
    world = bucket_world(notify=False, cross_partition=True)
    seed(world, 4)
    stack = stack_of(world)
    # WHEN the target is in aws-cn and the operator gives no credentials for it: a usage error, exit 2
    code, _, err = cli(capsys, "--stack-name", stack)
    assert code == USAGE and f"{world.target_bucket} is in {world.target_region}, another partition" in err
    assert "--target-profile" in err
    # WITH a profile holding that partition's keys: equal
    session, _ = peer_session()
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    write_profile(tmp_path / "credentials", "cn", session)
    code, out, _ = cli(capsys, "--stack-name", stack, "--target-profile", "cn")
    assert code == OK and f"({world.target_region}), target read with --target-profile cn" in out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "give --source-bucket and --target-bucket, or --stack-name"),
        (["--source-bucket", "a-bucket"], "give --source-bucket and --target-bucket"),
        (
            ["--source-bucket", "aa1", "--target-bucket", "bb2", "--target-profile", "p", "--target-role-arn", "r"],
            "give --target-profile or --target-role-arn, not both",
        ),
    ],
)
def test_usage_errors_exit_2_and_say_what_to_give(aws, capsys, argv, says):
    code, _, err = cli(capsys, *argv)
    assert code == USAGE and says in err


def test_what_cannot_be_compared_exits_3_and_says_why(aws, capsys, monkeypatch):
    world = bucket_world(notify=False)
    seed(world, 3)
    # a stack that replicates no bucket, and no buckets given
    deploy_stack("tables-only", {"ParkingQueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/q"}, {})
    code, _, err = cli(capsys, "--stack-name", "tables-only")
    assert code == ERROR and "has no output BucketReplicatorFunctionName" in err
    # (the same stack with both buckets given explicitly is fine)
    code, _, _ = cli(
        capsys,
        "--stack-name",
        "tables-only",
        "--source-bucket",
        world.source_bucket,
        "--target-bucket",
        world.target_bucket,
    )
    assert code == OK
    # a bucket that does not exist
    code, _, err = cli(capsys, "--source-bucket", world.source_bucket, "--target-bucket", "no-such-bucket-here")
    assert code == ERROR and "AWS refused a call: NoSuchBucket" in err
    # the target refuses the operator's own credentials: the hint names --target-profile
    made = bucket_compare.s3_client

    def refusing_target(session: boto3.Session, region: str) -> Any:
        client = made(session, region)
        if region == world.target_region:
            inject(client, "ListObjectsV2", S3Fault("AccessDenied", times=10**6, status=403))
        return client

    monkeypatch.setattr(bucket_compare, "s3_client", refusing_target)
    code, _, err = cli(
        capsys,
        "--source-bucket",
        world.source_bucket,
        "--target-bucket",
        world.target_bucket,
        "--target-region",
        world.target_region,
    )
    assert code == ERROR and "AccessDenied" in err and "give --target-profile (a profile of that account)" in err
