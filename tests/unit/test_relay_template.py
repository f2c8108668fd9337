"""The bidirectional relay (templates/relay.yaml, nested in template.yaml): what the tests run is what deploys."""

from __future__ import annotations

import json
from typing import Any

from ddb_bridge.relay.settings import ApplierSettings, RelaySettings
from harness.bidirectional import relay_filter_patterns, tombstone_table_spec
from scripts.render_template import application, find_resource


def template() -> dict[str, Any]:
    """templates/relay.yaml, the nested template of the bidirectional scenario."""
    (relay,) = [t for t in application() if t.name == "templates/relay.yaml"]
    return relay.body


def resolve_sub(value: Any, params: dict[str, Any], names: dict[str, str]) -> str:
    """Resolve an Fn::Sub of the filter patterns with the parameters' defaults and given names."""
    if isinstance(value, list):
        text, variables = value
        names = {**names, **{k: "cn-north-1" for k in variables}}  # Tag: the region when no tag is given
    else:
        text = value
    for name, param in params.items():
        text = text.replace("${" + name + "}", str(param.get("Default", "")))
    for name, replacement in names.items():
        text = text.replace("${" + name + "}", replacement)
    return text


def test_the_relay_filter_in_the_template_is_the_one_the_tests_apply():
    t = template()
    source = t["Resources"]["StreamRelayFunction"]["Properties"]["Events"]["LocalStream"]["Properties"]
    condition, when_bridge, otherwise = source["FilterCriteria"]["Fn::If"]
    # Bridge-owned stamps: no filter at all (only code can tell replication's writes: the verified attribute)
    assert t["Conditions"][condition] == {"Fn::Equals": [{"Ref": "StampMode"}, "bridge"]}
    assert when_bridge == {"Ref": "AWS::NoValue"} and relay_filter_patterns("cn-north-1", stamp_mode="bridge") == []
    # Application stamps: the patterns the harness applies are the template's
    patterns = [json.loads(resolve_sub(f["Pattern"]["Fn::Sub"], t["Parameters"], {})) for f in otherwise["Filters"]]
    assert patterns == relay_filter_patterns("cn-north-1")


def test_the_roles_hold_no_transaction_rights_and_exactly_what_the_write_path_uses():
    resources = template()["Resources"]
    for role, expected in (
        (
            "StreamRelayRole",
            {
                "RepairThisTable": ["dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:DeleteItem"],
                "LocalVersionsAndTombstones": ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"],
            },
        ),
        (
            "RelayApplierRole",
            {
                "WriteThisTableLastWriterWins": [
                    "dynamodb:BatchGetItem",
                    "dynamodb:BatchWriteItem",
                    "dynamodb:DeleteItem",
                ],
                "ReplicatedDeletesAndEchoMarkers": ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"],
            },
        ),
    ):
        policies = [p for p in resources[role]["Properties"]["Policies"] if "PolicyDocument" in p]  # not the !If
        statements = [s for p in policies for s in p["PolicyDocument"]["Statement"] if "Sid" in s]
        dynamodb = {s["Sid"]: s["Action"] for s in statements if "dynamodb:BatchGetItem" in s.get("Action", [])}
        assert dynamodb == expected, role
        everything = json.dumps(statements)
        assert "ConditionCheckItem" not in everything and "TransactWriteItems" not in everything


def test_the_peer_writer_user_may_only_put_records_on_the_relay_stream():
    user = template()["Resources"]["PeerWriterUser"]["Properties"]
    statements = [s for p in user["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert statements == [
        {
            "Sid": "PutRecordsOnTheRelayStreamOnly",
            "Effect": "Allow",
            "Action": ["kinesis:PutRecords", "kinesis:PutRecord"],
            "Resource": {"Fn::GetAtt": ["RelayStream", "Arn"]},
        }
    ]


def test_the_relay_stream_is_encrypted_and_the_tombstone_table_expires():
    resources = template()["Resources"]
    stream = resources["RelayStream"]["Properties"]
    assert stream["StreamEncryption"]["EncryptionType"] == "KMS"
    assert stream["RetentionPeriodHours"] == {"Ref": "RelayStreamRetentionHours"}
    spec = tombstone_table_spec()
    assert spec["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert spec["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]


def test_both_functions_get_every_setting_they_require():
    resources = template()["Resources"]
    for name, settings in (("StreamRelayFunction", RelaySettings), ("RelayApplierFunction", ApplierSettings)):
        fn = resources[name]
        assert "Condition" not in fn  # the whole nested template exists in bidirectional mode only
        env = {k: "x" for k in fn["Properties"]["Environment"]["Variables"]}
        required = {"LOCAL_TABLE_NAME", "TOMBSTONE_TABLE_NAME", "PARKING_QUEUE_URL", "LOCAL_REGION_TAG"}
        if settings is RelaySettings:
            required |= {
                "PEER_REGION",
                "PEER_STREAM_NAME",
                "PEER_CREDENTIALS_SECRET",
                "PEER_CREDENTIALS_PARAMETER",
                "PEER_CREDENTIALS_PARAMETER_PREFIX",
            }
        assert required <= set(env), name


def test_every_bidirectional_resource_only_exists_in_bidirectional_mode():
    root = application()[0]
    relay = root.resources()["Relay"]
    assert relay["Properties"]["Location"] == "templates/relay.yaml"
    assert relay["Condition"] == "IsBidirectional"
    assert root.body["Conditions"]["IsBidirectional"] == {"Fn::Equals": [{"Ref": "Scenario"}, "bidirectional"]}

    ours = [
        "RelayStream",
        "RelayTombstoneTable",
        "StreamRelayFunction",
        "RelayApplierFunction",
        "StreamRelayLogGroup",
        "RelayApplierLogGroup",
        "PeerWriterUser",
        "StreamRelayIteratorAgeAlarm",
        "RelayApplierIteratorAgeAlarm",
        "PeerUnreachableAlarm",
    ]
    for name in ours:
        holder, _ = find_resource(name)
        assert holder.name == "templates/relay.yaml", name
