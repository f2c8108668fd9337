"""The full load's pure parts: settings, input and plan, the import's table parameters, the retention guard."""

from __future__ import annotations

import pytest

from ddb_bridge.core.settings import SettingsError
from ddb_bridge.loads.fullload.plan import InvalidInput, parse_input, plan
from ddb_bridge.loads.fullload.precheck import table_creation
from ddb_bridge.loads.fullload.retention import retention
from ddb_bridge.loads.settings import FullLoadSettings

HOUR_MS = 3600 * 1000
ENV = {
    "AWS_REGION": "us-east-1",
    "SOURCE_TABLE_NAME": "orders",
    "TARGET_TABLE_NAME": "orders",
    "TARGET_REGION": "eu-west-1",
    "TARGET_ROLE_ARN": "arn:aws:iam::222222222222:role/loader",
    "TARGET_EXTERNAL_ID": "secret-id",
    "EXPORT_BUCKET_NAME": "orders-export",
    "EXPORT_BUCKET_OWNER": "222222222222",
    "REPLICATOR_FUNCTION_NAME": "ddb-bridge-table-replicator",
}
CN = {
    **{k: v for k, v in ENV.items() if not k.startswith("TARGET_ROLE")},
    "TARGET_REGION": "cn-north-1",
    "PEER_CREDENTIALS_SECRET": "ddb-bridge/peer",
    "PEER_BUCKET_NAME": "orders-peer",
}


def test_settings_same_partition_and_cross_partition() -> None:
    same = FullLoadSettings.from_env(ENV)
    assert not same.cross_partition and same.export_prefix == "ddb-bridge/full-load" and same.safety_minutes == 120
    cross = FullLoadSettings.from_env(CN)
    assert cross.cross_partition and cross.peer and cross.peer.secret_id == "ddb-bridge/peer"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({**CN, "PEER_CREDENTIALS_SECRET": ""}, "PEER_CREDENTIALS_PARAMETER_PREFIX is required"),
        (
            {**CN, "TARGET_ROLE_ARN": "arn:aws-cn:iam::333333333333:role/x", "TARGET_EXTERNAL_ID": "xx"},
            "TARGET_ROLE_ARN must be empty for a cross-partition target",
        ),
        ({**CN, "PEER_BUCKET_NAME": ""}, "PEER_BUCKET_NAME is required for a cross-partition full load"),
        ({**CN, "PEER_CREDENTIALS_PARAMETER": "/p"}, "are exclusive"),
        ({**ENV, "EXPORT_BUCKET_NAME": "Not_A_Bucket"}, "EXPORT_BUCKET_NAME='Not_A_Bucket' is invalid"),
        ({**ENV, "EXPORT_BUCKET_OWNER": "12"}, "EXPORT_BUCKET_OWNER='12' is invalid"),
        ({**ENV, "HANDOVER_SAFETY_MINUTES": "5"}, "HANDOVER_SAFETY_MINUTES=5 is out of range"),
        ({k: v for k, v in ENV.items() if k != "REPLICATOR_FUNCTION_NAME"}, "REPLICATOR_FUNCTION_NAME is required"),
    ],
)
def test_settings_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        FullLoadSettings.from_env(env)


def test_plan_fixes_names_per_execution() -> None:
    settings = FullLoadSettings.from_env(ENV)
    one = plan({"input": {"pollSeconds": 5}, "execution": "run 1/a"}, settings, 1_000)
    two = plan({"input": {}, "execution": "run-2"}, settings, 1_000)
    assert one["valid"] and one["exportPrefix"] == "ddb-bridge/full-load/run-1-a" and one["pollSeconds"] == 5
    assert two["pollSeconds"] == 60 and two["safetySeconds"] == 7200 and two["importTimeoutSeconds"] == 1380 * 60
    assert one["clientToken"] != two["clientToken"] and len(one["clientToken"]) == 32
    assert plan({"input": {"pollSeconds": 5}, "execution": "run 1/a"}, settings, 9)["clientToken"] == one["clientToken"]
    bad = plan({"input": {"importTimeoutMinutes": 0}, "execution": "x"}, settings, 1)
    assert bad == {
        "valid": False,
        "message": "Invalid input: importTimeoutMinutes must be from 1 to 2880 (minutes "
        "the import may take), got 0. Fix the execution input and start a new "
        "execution.",
    }


def test_parse_input_rejects_unknown_fields_with_a_suggestion() -> None:
    with pytest.raises(InvalidInput, match=r"unknown field 'exportTimeout' \(did you mean exportTimeoutMinutes\?\)"):
        parse_input({"exportTimeout": 3}, FullLoadSettings.from_env(ENV))


def test_import_parameters_copy_keys_gsis_and_billing() -> None:
    desc = {
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "g", "l")],
        "BillingModeSummary": {"BillingMode": "PROVISIONED"},
        "ProvisionedThroughput": {"ReadCapacityUnits": 10, "WriteCapacityUnits": 5, "NumberOfDecreasesToday": 0},
        "GlobalSecondaryIndexes": [
            {
                "IndexName": "by-g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
                "IndexStatus": "ACTIVE",
                "ProvisionedThroughput": {"ReadCapacityUnits": 3, "WriteCapacityUnits": 2},
            }
        ],
        "LocalSecondaryIndexes": [],
    }
    params = table_creation(desc, "copy")
    assert params["TableName"] == "copy" and params["BillingMode"] == "PROVISIONED"
    assert params["ProvisionedThroughput"] == {"ReadCapacityUnits": 10, "WriteCapacityUnits": 5}
    assert params["GlobalSecondaryIndexes"] == [
        {
            "IndexName": "by-g",
            "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
            "ProvisionedThroughput": {"ReadCapacityUnits": 3, "WriteCapacityUnits": 2},
        }
    ]
    assert [a["AttributeName"] for a in params["AttributeDefinitions"]] == ["pk", "sk", "g"]  # not the unused "l"
    on_demand = table_creation(
        {
            **desc,
            "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
            "OnDemandThroughput": {"MaxReadRequestUnits": 100, "MaxWriteRequestUnits": 50},
        },
        "c",
    )
    assert "ProvisionedThroughput" not in on_demand and on_demand["OnDemandThroughput"]["MaxWriteRequestUnits"] == 50
    assert "ProvisionedThroughput" not in on_demand["GlobalSecondaryIndexes"][0]


def test_retention_guard_boundaries() -> None:
    p = {"safetySeconds": 600, "targetTable": "t", "targetRegion": "eu-west-1"}
    t = 1_000_000_000_000
    assert retention(p, t, t + 23 * HOUR_MS + 49 * 60_000)["ok"] is True
    late = retention(p, t, t + 23 * HOUR_MS + 50 * 60_000)  # 24 h - 10 min
    assert late["ok"] is False and late["minutesLeft"] == 0
    assert "Stopped before any change could be lost" in late["message"]
    assert retention(p, t, t + 50 * 60_000, max_record_age=3600)["ok"] is False  # 1 h - 10 min
    assert retention(p, t, t + 49 * 60_000, max_record_age=3600)["ok"] is True
