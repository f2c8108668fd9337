"""Settings: a bad or missing setting names the variable and what it expects."""

import pytest

from ddb_bridge.core.settings import SettingsError
from ddb_bridge.table.settings import ReplicatorSettings

GOOD = {
    "TARGET_TABLE_NAME": "orders",
    "TARGET_REGION": "eu-west-1",
    "TARGET_ROLE_ARN": "arn:aws-cn:iam::123456789012:role/writer",
    "TARGET_EXTERNAL_ID": "ext-123",
    "PARKING_QUEUE_URL": "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/parking",
}


def test_good_settings_parse_with_defaults():
    s = ReplicatorSettings.from_env(GOOD)
    assert s.mode == "ordered" and s.write_concurrency == 16 and s.replicate_ttl_deletes is True
    assert s.versions.ts == "last_update_timestamp" and s.versions.origin == "last_updater_region"
    assert s.target.role_arn.startswith("arn:aws-cn:")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"TARGET_TABLE_NAME": ""}, "TARGET_TABLE_NAME is required"),
        ({"TARGET_TABLE_NAME": "a b"}, "TARGET_TABLE_NAME='a b' is invalid"),
        ({"TARGET_REGION": "Europe"}, "TARGET_REGION='Europe' is invalid: expected an AWS region"),
        ({"REPLICATION_MODE": "fast"}, "REPLICATION_MODE='fast' is invalid: expected one of ordered, lww"),
        ({"WRITE_CONCURRENCY": "0"}, "WRITE_CONCURRENCY=0 is out of range: expected 1 to 64"),
        ({"WRITE_CONCURRENCY": "many"}, "WRITE_CONCURRENCY='many' is invalid: expected a whole number"),
        ({"REPLICATE_TTL_DELETES": "maybe"}, "REPLICATE_TTL_DELETES='maybe' is invalid: expected true or false"),
        ({"TARGET_ROLE_ARN": "writer"}, "TARGET_ROLE_ARN='writer' is invalid: expected an IAM role ARN"),
        ({"TARGET_EXTERNAL_ID": ""}, "TARGET_EXTERNAL_ID is required when TARGET_ROLE_ARN is set"),
        ({"PARKING_QUEUE_URL": ""}, "PARKING_QUEUE_URL is required"),
        ({"VERSION_TS_ATTR": "x", "VERSION_ORIGIN_ATTR": "x"}, "must name different attributes"),
    ],
)
def test_bad_settings_fail_with_the_variable_named(override, message):
    with pytest.raises(SettingsError, match=None) as err:
        ReplicatorSettings.from_env({**GOOD, **override})
    assert message in str(err.value)
