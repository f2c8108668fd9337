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
    patterns = [
        json.loads(resolve_sub(f["Pattern"]["Fn::Sub"], t["Parameters"], {}))
        for f in source["FilterCriteria"]["Filters"]
    ]
    assert patterns == relay_filter_patterns("cn-north-1")


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
