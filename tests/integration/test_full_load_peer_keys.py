"""Reaching the peer partition with keys kept in SSM SecureString or Secrets Manager (docs/design.md#credentials)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from ddb_bridge.core.access import PeerKeys, TargetAccess
from ddb_bridge.core.errors import RetryableError
from ddb_bridge.core.settings import PeerKeysSettings
from ddb_bridge.loads.settings import FullLoadSettings
from harness.load_world import PEER_REGION, TableShape, load_world
from harness.workflows import run


def test_keys_from_an_ssm_securestring_reach_the_peer_and_a_rotation_is_picked_up(aws: Any) -> None:
    # GIVEN the peer's keys in an SSM SecureString of this account
    world = load_world(TableShape(), cross_partition=True)
    keys = json.loads(
        boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(SecretId=world.peer_secret)[
            "SecretString"
        ]
    )
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name="/ddb-bridge/peer-keys", Type="SecureString", Value=json.dumps(keys))
    settings = FullLoadSettings.from_env(
        {**world.full_load_env(), "PEER_CREDENTIALS_SECRET": "", "PEER_CREDENTIALS_PARAMETER": "/ddb-bridge/peer-keys"}
    )
    assert settings.peer == PeerKeysSettings(None, "/ddb-bridge/peer-keys", 300)
    access = TargetAccess(settings.target, PeerKeys(settings.peer))

    # WHEN the target side is used, THEN it is the peer account's bucket that it sees
    assert [b["Name"] for b in access.client("s3").list_buckets()["Buckets"]] == [world.peer_bucket]
    first = access.session().get_credentials().access_key
    assert first == keys["accessKeyId"]

    # AND a rotated key is used once the cache is refreshed (after an auth failure), without a redeploy
    iam = world.target_session.client("iam")
    user = iam.list_users()["Users"][0]["UserName"]
    new = iam.create_access_key(UserName=user)["AccessKey"]
    ssm.put_parameter(
        Name="/ddb-bridge/peer-keys",
        Type="SecureString",
        Overwrite=True,
        Value=json.dumps({"accessKeyId": new["AccessKeyId"], "secretAccessKey": new["SecretAccessKey"]}),
    )
    assert access.session().get_credentials().access_key == first  # cached (5 min)
    access.refresh()
    assert access.session().get_credentials().access_key == new["AccessKeyId"]
    assert access.client("s3").list_buckets()["Buckets"][0]["Name"] == world.peer_bucket


def test_malformed_peer_keys_are_a_clear_error_and_a_failed_precheck(aws: Any) -> None:
    world = load_world(TableShape(), cross_partition=True)
    assert world.peer_secret
    boto3.client("secretsmanager", region_name="us-east-1").put_secret_value(
        SecretId=world.peer_secret, SecretString=json.dumps({"user": "x"})
    )
    settings = FullLoadSettings.from_env(world.full_load_env())
    assert settings.peer
    # an operator's to fix, no redeploy needed: retried (and counted as NonRetryableFailures), never parked
    with pytest.raises(RetryableError, match=r'must hold JSON \{"accessKeyId"') as error:
        PeerKeys(settings.peer).read()
    assert error.value.needs_operator

    world.deploy_replicator()
    world.create_mapping()
    result = run(world.full_load_machine(), {})
    assert result["error"] == "FullLoad.PreCheckFailed"
    assert f"secret {world.peer_secret} must hold JSON" in result["cause"]
    assert f"(needed to reach {PEER_REGION})" in result["cause"]
