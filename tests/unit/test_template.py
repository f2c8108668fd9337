"""Every template (template.yaml, templates/*.yaml, target-account.yaml): the rules every resource must keep."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from scripts.render_template import (
    ROOT,
    Template,
    every_template,
    find_resource,
    readme_parameters,
    readme_section,
    walk,
)

TEMPLATES = every_template()
APPLICATION = TEMPLATES[:-1]
IDS = [t.name for t in TEMPLATES]


def resources(kind: str, templates: list[Template] = TEMPLATES) -> dict[str, dict[str, Any]]:
    """Resources of one type across templates (logical ids are unique across the application)."""
    return {name: r for t in templates for name, r in t.resources(kind).items()}


def statements(policy_holder: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of a role's or user's inline policies, Fn::If branches included."""
    found = []
    for node in walk(policy_holder.get("Properties", {}).get("Policies", [])):
        if isinstance(node, dict) and "Effect" in node and "Action" in node:
            found.append(node)
    return found


def actions(statement: dict[str, Any]) -> list[str]:
    value = statement["Action"]
    return value if isinstance(value, list) else [value]


def test_the_application_is_the_root_and_one_nested_template_per_capability():
    names = [t.name for t in APPLICATION]
    assert names == [
        "template.yaml",
        "templates/shared.yaml",
        "templates/progress.yaml",
        "templates/table-replication.yaml",
        "templates/full-load.yaml",
        "templates/backfill.yaml",
        "templates/relay.yaml",
        "templates/verify.yaml",
        "templates/s3.yaml",
        "templates/observability.yaml",
    ]
    # the root holds the layer and the nested applications only: it reads as the data-flow diagram
    kinds = {r["Type"] for r in APPLICATION[0].resources().values()}
    assert kinds == {"AWS::Serverless::LayerVersion", "AWS::Serverless::Application"}


@pytest.mark.parametrize("template", TEMPLATES, ids=IDS)
def test_arns_are_built_with_the_partition(template):
    text = template.path.read_text()
    assert not re.search(r"arn:aws:", text), "hard-coded arn:aws: breaks China (aws-cn) regions"


@pytest.mark.parametrize("template", TEMPLATES, ids=IDS)
def test_no_tracker_numbers_in_templates(template):
    assert not re.search(r"(?i)\bissue\s*#?\d", template.path.read_text())


@pytest.mark.parametrize("template", TEMPLATES, ids=IDS)
def test_no_wildcard_actions_and_no_full_access_policies(template):
    for node in walk(template.body["Resources"]):
        if isinstance(node, dict) and "Action" in node and node.get("Effect") == "Allow":
            assert all(a != "*" and not str(a).endswith(":*") for a in actions(node)), node
        if isinstance(node, dict) and node.get("Effect") == "Deny":
            # a Deny may name a whole service (TLS only), never everything
            assert "*" not in actions(node), node
    text = json.dumps(template.body["Resources"], default=str)
    assert "FullAccess" not in text


@pytest.mark.parametrize("template", APPLICATION, ids=[t.name for t in APPLICATION])
def test_local_paths_are_relative_to_their_template_and_exist(template):
    for name, resource in template.resources().items():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "DefinitionUri", "ContentUri", "Location"):
            if isinstance(props.get(key), str):
                assert template.local_path(props[key]).exists(), f"{template.name} {name}.{key}={props[key]}"


def test_every_stream_event_source_retries_in_order_and_keeps_failures():
    sources = [
        (t, fn, ev["Properties"])
        for t in APPLICATION
        for fn, r in t.resources("AWS::Serverless::Function").items()
        for ev in r["Properties"].get("Events", {}).values()
        if ev["Type"] in ("DynamoDB", "Kinesis")
    ]
    assert {fn for _, fn, _ in sources} == {"TableReplicatorFunction", "StreamRelayFunction", "RelayApplierFunction"}
    for template, fn, props in sources:
        params = template.body["Parameters"]
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"], fn
        assert props["BisectBatchOnFunctionError"] is True, fn
        assert "OnFailure" in props["DestinationConfig"], fn
        retries = props["MaximumRetryAttempts"]
        default = params[retries["Ref"]]["Default"] if isinstance(retries, dict) else retries
        assert 0 <= int(default) <= 10000, fn
        # where it starts is a parameter: TRIM_HORIZON by default, LATEST allowed
        assert props["StartingPosition"] == {"Ref": "StartingPosition"}, fn
        assert params["StartingPosition"]["Default"] == "TRIM_HORIZON"
        assert params["StartingPosition"]["AllowedValues"] == ["TRIM_HORIZON", "LATEST"]
    root = APPLICATION[0].body["Parameters"]["StartingPosition"]
    assert "LATEST" in root["Description"] and "skips what the stream already holds" in root["Description"]


def test_every_queue_is_encrypted_and_every_log_group_expires():
    for qname, queue in resources("AWS::SQS::Queue").items():
        props = queue.get("Properties", {})
        assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props, qname
    for lname, group in resources("AWS::Logs::LogGroup").items():
        assert "RetentionInDays" in group["Properties"], lname


def _denies_without_tls(policy: dict[str, Any], service: str) -> list[Any]:
    """The resources of the policy's Deny-everyone-without-TLS statement on the whole service, if any."""
    for s in policy["Statement"]:
        if (
            s["Effect"] == "Deny"
            and s.get("Principal") == "*"
            and actions(s) == [f"{service}:*"]
            and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ):
            return s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
    return []


def test_every_bucket_and_every_queue_refuses_requests_without_tls():
    buckets = resources("AWS::S3::Bucket")
    queues = resources("AWS::SQS::Queue")
    # parking and on-failure (shared); the bucket events' queue, its dead-letter queue and parking queue (s3)
    assert buckets and len(queues) == 5, sorted(queues)
    for name, bucket in buckets.items():
        (policy,) = [
            p for p in resources("AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == {"Ref": name}
        ]
        assert policy.get("Condition") == bucket.get("Condition"), name
        covered = _denies_without_tls(policy["Properties"]["PolicyDocument"], "s3")
        if "BucketName" in bucket["Properties"]:  # a named bucket: its ARN built from the name
            bucket_name = bucket["Properties"]["BucketName"]["Ref"]
            assert [r["Fn::Sub"] for r in covered] == [
                f"arn:${{AWS::Partition}}:s3:::${{{bucket_name}}}",
                f"arn:${{AWS::Partition}}:s3:::${{{bucket_name}}}/*",
            ], name
        else:  # a bucket CloudFormation names: its ARN attribute
            assert covered == [{"Fn::GetAtt": [name, "Arn"]}, {"Fn::Sub": f"${{{name}.Arn}}/*"}], name
    for name in queues:
        (policy,) = [
            p for p in resources("AWS::SQS::QueuePolicy").values() if p["Properties"]["Queues"] == [{"Ref": name}]
        ]
        covered = _denies_without_tls(policy["Properties"]["PolicyDocument"], "sqs")
        assert covered == [{"Fn::GetAtt": [name, "Arn"]}], name


def test_what_holds_records_in_flight_is_kept_when_the_stack_goes():
    kept = {
        "ParkingQueue",
        "OnFailureQueue",
        "RelayStream",
        "RelayTombstoneTable",
        "BackfillProgressTable",
        "ExportBucket",
        "S3TargetBucket",  # target-account.yaml's S3 section
        # s3.yaml: the buckets, the events waiting (and dead-lettered), the sequencers, the backfill checkpoints
        "SourceBucket",
        "TargetBucket",
        "EventQueue",
        "EventDeadLetterQueue",
        "SequencerTable",
        "BucketBackfillProgressTable",
        "BucketParkingQueue",
        "ReplicatorProgressTable",  # progress.yaml: the drain's checkpoint and freeze time, read by the gate
        "VerifyProgressTable",  # verify.yaml: checkpoints of a verify (resumable per segment)
        "VerifyReportBucket",  # verify.yaml: the reports the gate and the operator read
    }
    holders = {
        **resources("AWS::SQS::Queue"),
        **resources("AWS::Kinesis::Stream"),
        **resources("AWS::DynamoDB::Table"),
        **resources("AWS::S3::Bucket"),
    }
    assert set(holders) == kept
    for name, resource in holders.items():
        assert resource.get("DeletionPolicy") == "Retain", name
        assert resource.get("UpdateReplacePolicy") == "Retain", name


def test_every_table_has_point_in_time_recovery_and_the_tombstones_expire():
    for name, table in resources("AWS::DynamoDB::Table").items():
        props = table["Properties"]
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, name
        assert props["SSESpecification"] == {"SSEEnabled": True}, name
        assert props["TimeToLiveSpecification"]["Enabled"] is True, name


def test_every_function_logs_to_a_log_group_with_retention():
    for template in APPLICATION:
        groups = template.resources("AWS::Logs::LogGroup")
        for fn, r in template.resources("AWS::Serverless::Function").items():
            config = r["Properties"].get("LoggingConfig", {})
            assert config.get("LogGroup", {}).get("Ref") in groups, f"{fn} has no explicit log group"


# Actions that can only be granted on "*", and why. Nothing else may have Resource "*".
STAR_ONLY = {
    "xray:PutTraceSegments": "X-Ray's trace actions have no resource-level permissions",
    "xray:PutTelemetryRecords": "X-Ray's trace actions have no resource-level permissions",
    "xray:GetSamplingRules": "X-Ray's sampling actions have no resource-level permissions (Step Functions)",
    "xray:GetSamplingTargets": "X-Ray's sampling actions have no resource-level permissions (Step Functions)",
    "ec2:DescribeNetworkInterfaces": "Lambda's VPC access: EC2 Describe actions work on '*' only",
    "ec2:DescribeSubnets": "Lambda's VPC access: EC2 Describe actions work on '*' only",
    "logs:CreateLogDelivery": "Step Functions log delivery has no resource-level permissions",
    "logs:GetLogDelivery": "Step Functions log delivery has no resource-level permissions",
    "logs:UpdateLogDelivery": "Step Functions log delivery has no resource-level permissions",
    "logs:DeleteLogDelivery": "Step Functions log delivery has no resource-level permissions",
    "logs:ListLogDeliveries": "Step Functions log delivery has no resource-level permissions",
    "logs:PutResourcePolicy": "Step Functions log delivery has no resource-level permissions",
    "logs:DescribeResourcePolicies": "Step Functions log delivery has no resource-level permissions",
    "logs:DescribeLogGroups": "Step Functions log delivery has no resource-level permissions",
}
STATE_MACHINE_ONLY = {a for a in STAR_ONLY if a.startswith(("logs:", "xray:GetSampling"))}


def _role_of(template: Template, resource: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    role = resource["Properties"].get("Role")
    assert isinstance(role, dict) and role.get("Fn::GetAtt", [None, None])[1] == "Arn", role
    name = role["Fn::GetAtt"][0]
    return name, template.resources("AWS::IAM::Role")[name]


def test_every_function_and_workflow_has_its_own_scoped_role():
    seen_roles = []
    for template in APPLICATION:
        for kind, service in (
            ("AWS::Serverless::Function", "lambda.amazonaws.com"),
            ("AWS::Serverless::StateMachine", "states.amazonaws.com"),
        ):
            for name, resource in template.resources(kind).items():
                props = resource["Properties"]
                assert "Policies" not in props, f"{name}: SAM would add managed policies; give it a Role"
                role_name, role = _role_of(template, resource)
                seen_roles.append(role_name)
                assert "ManagedPolicyArns" not in role["Properties"], role_name
                (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
                assert trust["Principal"] == {"Service": service}, role_name
                for s in statements(role):
                    assert s["Effect"] == "Allow"
                    targets = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
                    if "*" in targets:
                        allowed = STAR_ONLY if kind.endswith("StateMachine") else STAR_ONLY.keys() - STATE_MACHINE_ONLY
                        assert set(actions(s)) <= set(allowed), f"{role_name} {s['Sid']}: '*' where an ARN exists"
                if kind.endswith("Function"):
                    group = props["LoggingConfig"]["LogGroup"]["Ref"]
                    own_logs = [s for s in statements(role) if any(a.startswith("logs:") for a in actions(s))]
                    assert own_logs[0]["Resource"] == {"Fn::GetAtt": [group, "Arn"]}, role_name
                    for s in own_logs[1:]:  # only the import's own logs, which DynamoDB writes for it
                        assert s["Sid"] == "ImportLogsInThisAccount", f"{role_name} writes other logs"
    assert len(seen_roles) == len(set(seen_roles)) == 12, "one role per function and per workflow"


def test_no_role_or_user_anywhere_gets_a_managed_policy_or_a_kms_grant():
    for kind in ("AWS::IAM::Role", "AWS::IAM::User"):
        for name, r in resources(kind).items():
            assert "ManagedPolicyArns" not in r["Properties"], name
            # SecureStrings under aws/ssm and secrets under aws/secretsmanager need no kms:Decrypt grant
            assert not any(a.startswith("kms:") for s in statements(r) for a in actions(s)), name


def test_the_relay_reads_the_peer_keys_exactly_where_they_are():
    _, role = find_resource("StreamRelayRole")
    by_sid = {s["Sid"]: s for s in statements(role)}
    prefix = by_sid["ReadThePeerKeysParameters"]
    assert actions(prefix) == ["ssm:GetParameter"]
    assert [r["Fn::Sub"] for r in prefix["Resource"]] == [
        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${RelayPeerKeysParameterPrefix}AccessKey",
        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${RelayPeerKeysParameterPrefix}SecretKey",
    ]
    assert actions(by_sid["ReadThePeerKeysParameter"]) == ["ssm:GetParameter"]
    assert actions(by_sid["ReadThePeerKeysSecret"]) == ["secretsmanager:GetSecretValue"]
    _, fn = find_resource("StreamRelayFunction")
    env = fn["Properties"]["Environment"]["Variables"]
    assert env["PEER_CREDENTIALS_PARAMETER_PREFIX"] == {"Ref": "RelayPeerKeysParameterPrefix"}


def test_table_replicator_gets_every_required_setting():
    _, fn = find_resource("TableReplicatorFunction")
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


def test_target_roles_are_named_and_trust_only_the_source_roles_with_the_external_id_over_tls():
    target = TEMPLATES[-1]
    params = target.body["Parameters"]
    assert params["WriterRoleName"]["Default"] == "ddb-bridge-target-writer"
    assert params["LoaderRoleName"]["Default"] == "ddb-bridge-target-loader"
    for name, principal, role_name in (
        ("TargetWriterRole", {"Ref": "ReplicatorRoleArn"}, "WriterRoleName"),
        ("TargetLoaderRole", {"Ref": "LoaderPrincipalArns"}, "LoaderRoleName"),
    ):
        role = target.resources()[name]["Properties"]
        assert role["RoleName"] == {"Ref": role_name}
        (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"AWS": principal}
        assert statement["Condition"]["StringEquals"] == {"sts:ExternalId": {"Ref": "ExternalId"}}
        assert statement["Condition"]["Bool"] == {"aws:SecureTransport": "true"}
        denies = [s for s in statements(target.resources()[name]) if s["Effect"] == "Deny"]
        assert [s["Sid"] for s in denies] == ["TlsOnly"], name
        assert denies[0]["Condition"]["Bool"]["aws:SecureTransport"] == "false"
    writer = target.resources()["TargetWriterRole"]
    (policy,) = writer["Properties"]["Policies"]
    allowed = {a for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow" for a in actions(s)}
    assert allowed == {
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
        "dynamodb:ConditionCheckItem",
    }


def _alarms() -> list[tuple[Template, dict[str, Any]]]:
    return [(t, a["Properties"]) for t in APPLICATION for a in t.resources("AWS::CloudWatch::Alarm").values()]


def test_iterator_age_alarms_are_in_milliseconds():
    # Lambda's IteratorAge metric is in milliseconds: a threshold of "300" would fire at 0.3 s
    alarms = [(t, a) for t, a in _alarms() if a.get("MetricName") == "IteratorAge"]
    assert len(alarms) >= 3
    for template, alarm in alarms:
        threshold = alarm["Threshold"]
        value = template.body["Parameters"][threshold["Ref"]]["Default"] if isinstance(threshold, dict) else threshold
        assert int(value) >= 10_000, alarm


def test_every_stream_function_pages_on_non_retryable_failures():
    services = set()
    for template in APPLICATION:
        for fn, r in template.resources("AWS::Serverless::Function").items():
            if any(e["Type"] in ("DynamoDB", "Kinesis") for e in r["Properties"].get("Events", {}).values()):
                service = r["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
                assert re.fullmatch(r"\$\{RootStackName\}-[a-z]+(-[a-z]+)*", service["Fn::Sub"]), fn
                services.add(json.dumps(service))
                matching = [
                    a
                    for t, a in _alarms()
                    if t is template
                    and a.get("MetricName") == "NonRetryableFailures"
                    and a["Dimensions"] == [{"Name": "service", "Value": service}]
                ]
                assert len(matching) == 1, f"{fn}: no NonRetryableFailures alarm"
                (alarm,) = matching
                assert alarm["Namespace"] == "DdbBridge"
                assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 60, 1)
                assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
                assert alarm["AlarmActions"] == {
                    "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
                }
    assert len(services) == 3


def test_no_global_tracing_and_every_function_traces_by_the_root_decision():
    for template in APPLICATION[1:]:
        assert "Tracing" not in template.body.get("Globals", {}).get("Function", {}), template.name
        for fn, r in template.resources("AWS::Serverless::Function").items():
            assert r["Properties"]["Tracing"] == {
                "Fn::If": ["TracingOff", {"Ref": "AWS::NoValue"}, {"Ref": "TracingMode"}]
            }, fn


def test_the_functions_that_call_the_other_side_may_run_in_a_vpc():
    in_vpc = set()
    for template in APPLICATION:
        for fn, r in template.resources("AWS::Serverless::Function").items():
            if "VpcConfig" in r["Properties"]:
                in_vpc.add(fn)
                assert r["Properties"]["VpcConfig"]["Fn::If"][0] == "HasVpc", fn
    assert in_vpc == {
        "TableReplicatorFunction",
        "StreamRelayFunction",
        "FullLoadControlFunction",
        "BackfillFunction",
        "VerifyFunction",
    }


# ---- the application's wiring: root -> nested templates ----------------------------------------------------
def test_the_root_passes_each_nested_template_exactly_its_parameters():
    root = APPLICATION[0]
    for child in APPLICATION[1:]:
        passed = set(root.resources()[str(child.nested_as)]["Properties"].get("Parameters", {}))
        declared = child.body.get("Parameters", {})
        required = {n for n, p in declared.items() if "Default" not in p}
        assert passed <= set(declared), f"{child.name}: unknown {passed - set(declared)}"
        assert required <= passed, f"{child.name}: not given {required - passed}"
        assert passed == set(declared), f"{child.name}: left to its defaults {set(declared) - passed}"


CONSTRAINTS = ("Type", "AllowedValues", "AllowedPattern", "MinValue", "MaxValue", "NoEcho", "MinLength", "MaxLength")


def test_a_parameter_means_the_same_in_the_root_and_in_every_nested_template():
    root = APPLICATION[0].body["Parameters"]
    for child in APPLICATION[1:]:
        for name, spec in child.body.get("Parameters", {}).items():
            if name not in root:
                continue
            for key in CONSTRAINTS:
                assert spec.get(key) == root[name].get(key), f"{child.name} {name}.{key}"
            if "Default" in spec:
                assert str(spec["Default"]) == str(root[name].get("Default")), f"{child.name} {name} default"


def test_names_ids_and_arns_are_validated_by_a_pattern():
    for template in TEMPLATES:
        for name, spec in template.body.get("Parameters", {}).items():
            shaped = re.search(r"(Arn|Name|Region|Bucket|Prefix|Uuid|Id|Owner|Url)$", name)
            if shaped and spec.get("Type", "String") == "String" and "AllowedValues" not in spec:
                assert "AllowedPattern" in spec, f"{template.name} {name}"


def test_readme_parameters_section_is_generated_from_the_templates():
    readme = (ROOT / "README.md").read_text()
    section = readme_section(readme)
    assert section == readme_parameters(), "regenerate with: python scripts/render_template.py --readme"
    missing = [
        f"{t.name}:{name}"
        for t in APPLICATION
        for name in t.body.get("Parameters", {})
        if f"| `{name}` |" not in section
    ]
    assert missing == [], f"README's parameter tables lack {missing}"


def test_every_root_parameter_is_in_exactly_one_group():
    root = APPLICATION[0].body
    grouped = [
        p for g in root["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"] for p in g["Parameters"]
    ]
    assert sorted(grouped) == sorted(root["Parameters"])
    assert len(grouped) == len(set(grouped))


def test_samconfig_has_one_environment_per_scenario_with_valid_defaults():
    import tomllib

    from scripts.render_template import parameter_values

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    root = APPLICATION[0].body
    expected = {
        "default": "one-way",
        "one-way-cross-account": "one-way",
        "one-way-same-account": "one-way",
        "full-load": "one-way",
        "bidirectional": "bidirectional",
        "buckets": "buckets-only",
    }
    assert set(config) - {"version"} == set(expected)
    for env, scenario in expected.items():
        deploy = config[env]["deploy"]["parameters"]
        assert deploy["capabilities"].split() == ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"], env
        overrides = dict(re.findall(r'(\w+)="([^"]*)"', deploy["parameter_overrides"]))
        assert overrides["Scenario"] == scenario, env
        # placeholders (<...>) are the user's to fill; everything else must already be a valid value
        concrete = {k: v for k, v in overrides.items() if "<" not in v}
        parameter_values(root, concrete, f"samconfig {env}")
        for key, value in overrides.items():
            if "<" in value:
                pattern = root["Parameters"][key]["AllowedPattern"]
                assert not re.fullmatch(pattern, value), f"{env} {key}: an unfilled placeholder must be refused"


def test_a_nested_template_refers_only_to_its_own_resources_and_parameters():
    # a nested template references only its own resources and parameters (outputs cross via the root)
    for template in APPLICATION[1:]:
        names = set(template.resources()) | set(template.body.get("Parameters", {}))
        for node in walk(template.body["Resources"]):
            if isinstance(node, dict) and "Ref" in node and not str(node["Ref"]).startswith("AWS::"):
                assert node["Ref"] in names, f"{template.name}: Ref {node['Ref']}"


def test_every_checkov_suppression_carries_its_reason():
    in_templates = [
        (t.name, name, skip)
        for t in TEMPLATES
        for name, r in t.resources().items()
        for skip in r.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert in_templates, "expected the per-resource suppressions"
    for where, name, skip in in_templates:
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]) and len(skip.get("comment", "")) > 40, (where, name)
    lines = (ROOT / ".checkov.yaml").read_text().splitlines()
    skips = [i for i, line in enumerate(lines) if re.fullmatch(r"\s*- CKV2?_AWS_\d+", line)]
    assert skips, "expected the project-wide suppressions"
    for i in skips:
        assert lines[i - 1].strip().startswith("#"), f".checkov.yaml: {lines[i].strip()} has no reason above it"
