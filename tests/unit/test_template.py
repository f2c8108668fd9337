"""template.yaml and target-account.yaml: the security and reliability rules every resource must keep."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ["template.yaml", "target-account.yaml", "templates/s3.yaml"]


def load(name: str) -> dict[str, Any]:
    template, matches = decode(str(ROOT / name))
    assert not matches, matches
    return template


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def walk(node: Any):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


@pytest.mark.parametrize("name", TEMPLATES)
def test_arns_are_built_with_the_partition(name):
    text = (ROOT / name).read_text()
    assert not re.search(r"arn:aws:", text), "hard-coded arn:aws: breaks China (aws-cn) regions"


@pytest.mark.parametrize("name", TEMPLATES)
def test_no_wildcard_actions_and_no_full_access_policies(name):
    template = load(name)
    for node in walk(template["Resources"]):
        if isinstance(node, dict) and "Action" in node:
            actions = node["Action"] if isinstance(node["Action"], list) else [node["Action"]]
            assert all(a != "*" and not str(a).endswith(":*") for a in actions), actions
    text = json.dumps(template["Resources"], default=str)
    assert "FullAccess" not in text


def test_every_stream_event_source_retries_in_order_and_keeps_failures():
    template = load("template.yaml")
    sources = [
        (fn, ev["Properties"])
        for fn, r in resources(template, "AWS::Serverless::Function").items()
        for ev in r["Properties"].get("Events", {}).values()
        if ev["Type"] in ("DynamoDB", "Kinesis")
    ]
    assert sources, "no stream event source found"
    params = template["Parameters"]
    for fn, props in sources:
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"], fn
        assert props["BisectBatchOnFunctionError"] is True, fn
        assert "OnFailure" in props["DestinationConfig"], fn
        retries = props["MaximumRetryAttempts"]
        default = params[retries["Ref"]]["Default"] if isinstance(retries, dict) else retries
        assert 0 <= int(default) <= 10000, fn


def test_every_queue_is_encrypted_and_every_log_group_expires():
    for name in TEMPLATES:
        template = load(name)
        for qname, queue in resources(template, "AWS::SQS::Queue").items():
            props = queue.get("Properties", {})
            assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props, qname
        for lname, group in resources(template, "AWS::Logs::LogGroup").items():
            assert "RetentionInDays" in group["Properties"], lname


def test_every_function_logs_to_a_log_group_with_retention():
    template = load("template.yaml")
    groups = resources(template, "AWS::Logs::LogGroup")
    for fn, r in resources(template, "AWS::Serverless::Function").items():
        config = r["Properties"].get("LoggingConfig", {})
        assert config.get("LogGroup", {}).get("Ref") in groups, f"{fn} has no explicit log group"


def test_table_replicator_gets_every_required_setting():
    fn = load("template.yaml")["Resources"]["TableReplicatorFunction"]
    env = fn["Properties"]["Environment"]["Variables"]
    assert {
        "TARGET_TABLE_NAME",
        "TARGET_REGION",
        "TARGET_ROLE_ARN",
        "TARGET_EXTERNAL_ID",
        "REPLICATION_MODE",
        "REPLICATE_TTL_DELETES",
        "PARKING_QUEUE_URL",
    } <= set(env)


def test_target_role_trusts_only_the_replicator_with_the_external_id():
    role = load("target-account.yaml")["Resources"]["TargetWriterRole"]["Properties"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"AWS": {"Ref": "ReplicatorRoleArn"}}
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}}
    (policy,) = role["Policies"]
    actions = {a for s in policy["PolicyDocument"]["Statement"] for a in s["Action"]}
    assert actions == {
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:ConditionCheckItem",
    }


def test_iterator_age_alarms_are_in_milliseconds():
    # Lambda's IteratorAge metric is in milliseconds: a threshold of "300" would fire at 0.3 s
    template = load("template.yaml")
    alarms = [
        a["Properties"]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "IteratorAge"
    ]
    assert len(alarms) >= 3
    for alarm in alarms:
        threshold = alarm["Threshold"]
        value = template["Parameters"][threshold["Ref"]]["Default"] if isinstance(threshold, dict) else threshold
        assert int(value) >= 10_000, alarm


def test_readme_lists_every_parameter_of_the_template():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in load("template.yaml")["Parameters"] if f"| `{name}` |" not in readme]
    assert missing == [], f"README's parameter table lacks {missing}"
