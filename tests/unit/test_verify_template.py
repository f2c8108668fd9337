"""templates/verify.yaml (nested in template.yaml) and target-account.yaml's verify section: least privilege,
kept state, TLS-only reports, logs, the alarm, the outputs the CLI reads, and settings the function accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

from ddb_bridge.verify.settings import VerifySettings

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> dict[str, Any]:
    template, matches = decode(str(ROOT / name))
    assert not matches, matches
    return template


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in template["Resources"].items() if r["Type"] == kind}


def statements(node: Any) -> list[dict[str, Any]]:
    """Every IAM statement anywhere under `node` (both branches of an Fn::If)."""
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            return [node]
        return [s for value in node.values() for s in statements(value)]
    if isinstance(node, list):
        return [s for value in node for s in statements(value)]
    return []


def test_the_outputs_are_the_ones_the_cli_reads() -> None:
    outputs = load("templates/verify.yaml")["Outputs"]
    assert {"VerifyStateMachineArn", "VerifyProgressTableName", "VerifyReportBucketName"} <= set(outputs)


def test_least_privilege_and_partition_aware_arns() -> None:
    text = (ROOT / "templates/verify.yaml").read_text()
    assert not re.search(r"arn:aws:", text)
    template = load("templates/verify.yaml")
    found = statements(template["Resources"])
    assert len(found) > 10
    for statement in found:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        # no wildcard grant: a Deny of every action without TLS (s3:*) is the one place a wildcard belongs
        allows = statement["Effect"] == "Allow"
        assert all(a != "*" and not (allows and str(a).endswith(":*")) for a in actions), statement
        if statement["Effect"] == "Allow" and statement.get("Resource") == "*":
            # only services without resource-level permissions
            assert all(a.split(":")[0] in ("logs", "xray", "ec2") for a in actions), statement
            if actions[0].startswith("ec2:"):
                assert all(a.startswith("ec2:Describe") for a in actions), statement
    role = of_type(template, "AWS::IAM::Role")["VerifyRole"]
    policy = json.dumps(role["Properties"]["Policies"], default=str)
    writes = {"dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"}
    source = next(s for s in statements(role) if s.get("Sid") == "ReadTheSourceTable")
    assert not writes & set(source["Action"])  # verify never writes the source
    assert "ReadAndRepairTheTargetInThisAccount" in policy and "TargetInThisAccount" in policy


def test_checkpoints_and_reports_are_kept_safe() -> None:
    template = load("templates/verify.yaml")
    table = of_type(template, "AWS::DynamoDB::Table")["VerifyProgressTable"]
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["Properties"]["SSESpecification"] == {"SSEEnabled": True}
    bucket = of_type(template, "AWS::S3::Bucket")["VerifyReportBucket"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert bucket["LifecycleConfiguration"]["Rules"][0]["Prefix"] == "ddb-bridge/verify/"
    (deny,) = statements(of_type(template, "AWS::S3::BucketPolicy")["VerifyReportBucketPolicy"])
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Action"] == "s3:*" and deny["Principal"] == "*"  # every request without TLS is refused


def test_logs_tracing_alarm_and_layer() -> None:
    template = load("templates/verify.yaml")
    for name, group in of_type(template, "AWS::Logs::LogGroup").items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
    machine = of_type(template, "AWS::Serverless::StateMachine")["VerifyStateMachine"]["Properties"]
    assert machine["DefinitionUri"] == "../statemachine/verify.asl.json"
    destination = machine["Logging"]["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]
    assert destination == {"Fn::GetAtt": ["VerifyStateMachineLogGroup", "Arn"]}
    (alarm,) = of_type(template, "AWS::CloudWatch::Alarm").values()
    assert alarm["Properties"]["MetricName"] == "ExecutionsFailed"
    assert alarm["Properties"]["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "VerifyStateMachine"}}]
    assert template["Globals"]["Function"]["Layers"] == [{"Ref": "LayerArn"}]
    function = of_type(template, "AWS::Serverless::Function")["VerifyFunction"]["Properties"]
    assert function["CodeUri"] == "../functions/verify" and function["Timeout" if "Timeout" in function else "Role"]


def test_the_function_environment_is_what_the_settings_read() -> None:
    template = load("templates/verify.yaml")
    function = of_type(template, "AWS::Serverless::Function")["VerifyFunction"]["Properties"]
    variables = {**template["Globals"]["Function"]["Environment"]["Variables"], **function["Environment"]["Variables"]}
    read = set(re.findall(r'"([A-Z_]{4,})"', (ROOT / "layers/bridge/ddb_bridge/verify/settings.py").read_text()))
    assert read <= set(variables) | {"AWS_REGION"}, read - set(variables)
    sample = {
        "SOURCE_TABLE_NAME": "orders",
        "TARGET_TABLE_NAME": "orders",
        "TARGET_REGION": "eu-west-1",
        "TARGET_ROLE_ARN": "arn:aws:iam::222222222222:role/loader",
        "TARGET_EXTERNAL_ID": "secret-id",
        "VERIFY_MODE": "lww",
        "VERIFY_PROGRESS_TABLE": "stack-verify-progress",
        "VERIFY_REPORT_BUCKET": "stack-verify-report",
        "VERIFY_REPORT_PREFIX": function["Environment"]["Variables"]["VERIFY_REPORT_PREFIX"],
        "VERIFY_IN_FLIGHT_SECONDS": "300",
        "VERIFY_READ_CONCURRENCY": "8",
        "AWS_REGION": "us-east-1",
    }
    settings = VerifySettings.from_env(sample)
    assert settings.report_prefix == "ddb-bridge/verify" and settings.target.role_arn


def test_target_account_grants_verify_reads_and_the_repairs_delete_only() -> None:
    template = load("target-account.yaml")
    policy = template["Resources"]["TargetLoaderVerifyReadPolicy"]
    assert policy["Condition"] == "HasLoader" and policy["Properties"]["RoleName"] == {"Ref": "TargetLoaderRole"}
    reads, deletes = statements(policy)
    assert set(reads["Action"]) == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Scan",
        "dynamodb:DescribeTable",
    }
    # a repair removes an item the source lacks (guarded by what verify read); nothing else is added
    assert deletes["Action"] == "dynamodb:DeleteItem" and deletes["Resource"] == reads["Resource"]
