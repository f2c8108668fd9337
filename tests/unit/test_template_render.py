"""Every scenario rendered as CloudFormation resolves it: Rules, Conditions, nested stacks, what is deployed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scripts.render_template import (
    SCENARIOS,
    TARGET_SCENARIOS,
    RenderError,
    Scenario,
    application,
    failed_rules,
    render_scenario,
    render_target,
    walk,
)

RENDERS = {name: render_scenario(scenario) for name, scenario in SCENARIOS.items()}
ROOT_TEMPLATE = application()[0].body
CALL_THE_OTHER_SIDE = {
    "TableReplicatorFunction",
    "StreamRelayFunction",
    "FullLoadControlFunction",
    "BackfillFunction",
    "VerifyFunction",
}
STAR_ONLY_FOR_FUNCTIONS = {
    "xray:PutTraceSegments",  # X-Ray's trace actions have no resource-level permissions
    "xray:PutTelemetryRecords",
    "ec2:DescribeNetworkInterfaces",  # EC2 Describe actions work on "*" only (Lambda's VPC access)
    "ec2:DescribeSubnets",
}


def resources(rendered: dict[str, dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {n: r for t in rendered.values() for n, r in t["Resources"].items() if r["Type"] == kind}


def role_statements(rendered: dict[str, dict[str, Any]], role: str) -> list[dict[str, Any]]:
    (found,) = [t["Resources"][role] for t in rendered.values() if role in t["Resources"]]
    return [s for p in found["Properties"].get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


def functions(rendered: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return resources(rendered, "AWS::Serverless::Function")


def function_role(rendered: dict[str, dict[str, Any]], fn: dict[str, Any]) -> str:
    return str(fn["Properties"]["Role"]["Fn::GetAtt"][0])


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_nested_stack_exists_only_in_the_scenarios_that_can_run_it():
    deployed = {name: sorted(rendered) for name, rendered in RENDERS.items()}
    shared, table, full, back, relay, buckets, progress, watch, verify = (
        "templates/shared.yaml",
        "templates/table-replication.yaml",
        "templates/full-load.yaml",
        "templates/backfill.yaml",
        "templates/relay.yaml",
        "templates/s3.yaml",
        "templates/progress.yaml",
        "templates/observability.yaml",
        "templates/verify.yaml",
    )
    every = ["template.yaml", shared, watch]  # the queues and the dashboard/alarms, in every scenario
    # the replicator and its progress table go together; verify wherever both tables are named
    one_way = [*every, progress, table, verify]
    assert deployed == {
        "one-way-cross-account": sorted(one_way),
        "one-way-same-account": sorted([*one_way, back]),
        "one-way-china-vpc": sorted([*one_way, back]),
        "full-load": sorted([*one_way, full, back]),
        "full-load-same-account-vpc": sorted([*one_way, full, back]),
        "full-load-cross-partition": sorted([*every, full, relay, verify]),
        "bidirectional-secret": sorted([*every, relay]),
        "bidirectional-parameter": sorted([*every, relay]),
        "bidirectional-prefix-vpc": sorted([*every, relay]),
        "bidirectional-own-role": sorted([*every, relay]),
        # bucket replication is its own capability: alone, or beside a table scenario
        "buckets-same-account": sorted([*every, buckets]),
        "buckets-beside-one-way-cross-account": sorted([*one_way, back, buckets]),
        "buckets-cross-partition-vpc": sorted([*every, buckets]),
    }
    # BackfillEnabled defaults to true: a bidirectional stack still never gets the backfill (no settings for it)
    for name, scenario in SCENARIOS.items():
        if scenario.parameters["Scenario"] == "bidirectional":
            assert "BackfillEnabled" not in scenario.parameters
            assert back not in RENDERS[name]


@pytest.mark.parametrize(
    ("parameters", "refusal"),
    [
        ({"Scenario": "one-way", "SourceTableName": "orders", "TargetTableName": "orders"}, "SourceStreamArn"),
        (
            {"Scenario": "one-way", "SourceStreamArn": SCENARIOS["full-load"].parameters["SourceStreamArn"]},
            "TargetTableName",
        ),
        ({**SCENARIOS["bidirectional-secret"].parameters, "PeerRegion": ""}, "PeerRegion"),
        ({**SCENARIOS["bidirectional-secret"].parameters, "PeerStreamName": ""}, "PeerStreamName"),
        ({**SCENARIOS["bidirectional-secret"].parameters, "SourceStreamArn": ""}, "SourceStreamArn"),
        (
            {
                **SCENARIOS["bidirectional-secret"].parameters,
                "RelayPeerKeysParameterPrefix": "/DDBReplication/TableCN/",
            },
            "set one of RelayPeerKeysSecretArn",
        ),
        (
            {
                **SCENARIOS["bidirectional-parameter"].parameters,
                "RelayPeerKeysParameterPrefix": "/DDBReplication/TableCN/",
            },
            "set one of RelayPeerKeysSecretArn",
        ),
        ({**SCENARIOS["one-way-cross-account"].parameters, "TargetExternalId": ""}, "TargetExternalId"),
        ({**SCENARIOS["full-load"].parameters, "TargetTableName": ""}, "TargetTableName"),
        ({**SCENARIOS["full-load-cross-partition"].parameters, "FullLoadReplicatorFunctionName": ""}, "bidirectional"),
        ({**SCENARIOS["full-load-cross-partition"].parameters, "FullLoadEventSourceMappingUuid": ""}, "MappingUuid"),
        ({**SCENARIOS["full-load-cross-partition"].parameters, "PeerBucket": ""}, "PeerBucket"),
        (
            {
                **SCENARIOS["full-load-cross-partition"].parameters,
                "LoaderRoleArn": SCENARIOS["full-load"].parameters["LoaderRoleArn"],
            },
            "exclusive",
        ),
        ({**SCENARIOS["one-way-china-vpc"].parameters, "SecurityGroupIds": ""}, "SubnetIds and SecurityGroupIds"),
        ({**SCENARIOS["one-way-china-vpc"].parameters, "SubnetIds": ""}, "SubnetIds and SecurityGroupIds"),
    ],
)
def test_the_rules_refuse_a_scenario_without_its_required_values(parameters, refusal):
    failed = failed_rules(ROOT_TEMPLATE, parameters)
    assert any(refusal in f for f in failed), failed
    with pytest.raises(RenderError, match="Rules refuse"):
        render_scenario(Scenario("us-east-1", parameters))


def test_the_rules_accept_every_scenario_and_the_defaults_are_refused_for_want_of_a_table():
    for name, scenario in SCENARIOS.items():
        assert failed_rules(ROOT_TEMPLATE, scenario.parameters) == [], name
    assert failed_rules(ROOT_TEMPLATE, {}) == [
        "one-way needs SourceTableName",
        "one-way needs SourceStreamArn (the source table's NEW_AND_OLD_IMAGES stream)",
        "one-way needs TargetTableName",
    ]


def test_a_value_outside_its_pattern_is_refused_before_anything_renders():
    bad = {**SCENARIOS["one-way-cross-account"].parameters, "TargetRoleArn": "arn:aws:iam::<T>:role/writer"}
    with pytest.raises(RenderError, match="TargetRoleArn"):
        render_scenario(Scenario("us-east-1", bad))


@pytest.mark.parametrize("name", SCENARIOS)
def test_no_function_ends_up_with_a_managed_policy_or_a_star_where_an_arn_exists(name):
    rendered = RENDERS[name]
    for fn_name, fn in functions(rendered).items():
        assert "Policies" not in fn["Properties"], fn_name
        role = function_role(rendered, fn)
        (role_resource,) = [t["Resources"][role] for t in rendered.values() if role in t["Resources"]]
        assert "ManagedPolicyArns" not in role_resource["Properties"], role
        for statement in role_statements(rendered, role):
            if "*" in as_list(statement["Resource"]):
                assert set(as_list(statement["Action"])) <= STAR_ONLY_FOR_FUNCTIONS, f"{role} {statement['Sid']}"


@pytest.mark.parametrize("name", SCENARIOS)
def test_vpc_settings_and_eni_permissions_come_only_with_a_vpc(name):
    scenario, rendered = SCENARIOS[name], RENDERS[name]
    has_vpc = bool(scenario.parameters.get("SubnetIds"))
    for fn_name, fn in functions(rendered).items():
        eni = [
            s
            for s in role_statements(rendered, function_role(rendered, fn))
            if any(a.startswith("ec2:") for a in as_list(s["Action"]))
        ]
        if has_vpc and fn_name in CALL_THE_OTHER_SIDE:
            assert fn["Properties"]["VpcConfig"] == {
                "SubnetIds": scenario.parameters["SubnetIds"].split(","),
                "SecurityGroupIds": scenario.parameters["SecurityGroupIds"].split(","),
            }, fn_name
            (mutate,) = [s for s in eni if s["Sid"] == "ManageTheFunctionsNetworkInterfaces"]
            assert mutate["Resource"] == f"arn:{scenario.partition}:ec2:{scenario.region}:111111111111:*/*"
        else:
            assert "VpcConfig" not in fn["Properties"], fn_name
            assert eni == [], fn_name


def _tracing_on(scenario: Scenario) -> bool:
    mode = scenario.parameters.get("Tracing", "auto")
    return mode in ("Active", "PassThrough") or (mode == "auto" and scenario.partition == "aws")


@pytest.mark.parametrize("name", SCENARIOS)
def test_tracing_follows_the_parameter_and_the_partition(name):
    scenario, rendered = SCENARIOS[name], RENDERS[name]
    mode = scenario.parameters.get("Tracing", "auto")
    for fn_name, fn in functions(rendered).items():
        props = fn["Properties"]
        env = {**rendered_globals_env(rendered, fn_name), **props["Environment"]["Variables"]}
        xray = [s for s in role_statements(rendered, function_role(rendered, fn)) if s["Sid"] == "SendTraces"]
        if _tracing_on(scenario):
            assert props["Tracing"] == ("Active" if mode in ("auto", "Active") else "PassThrough"), fn_name
            assert "POWERTOOLS_TRACE_DISABLED" not in env, fn_name
            assert len(xray) == 1, fn_name
        else:
            assert "Tracing" not in props, fn_name
            assert env["POWERTOOLS_TRACE_DISABLED"] == "true", fn_name
            assert xray == [], fn_name
    for machine in resources(rendered, "AWS::Serverless::StateMachine").values():
        active = _tracing_on(scenario) and mode != "PassThrough"
        assert machine["Properties"]["Tracing"] == {"Enabled": active}


def rendered_globals_env(rendered: dict[str, dict[str, Any]], fn_name: str) -> dict[str, Any]:
    (template,) = [t for t in rendered.values() if fn_name in t["Resources"]]
    return dict(template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))


def test_auto_tracing_is_active_in_aws_and_off_in_aws_cn_for_the_same_stack():
    parameters = {**SCENARIOS["bidirectional-secret"].parameters}
    global_side = render_scenario(Scenario("ap-southeast-1", parameters))
    china_side = render_scenario(
        Scenario("cn-north-1", {**parameters, "PeerRegion": "ap-southeast-1", "RelayPeerKeysSecretArn": ""})
    )
    passed = [
        r["template.yaml"]["Resources"]["Relay"]["Properties"]["Parameters"]["TracingMode"]
        for r in (global_side, china_side)
    ]
    assert passed == ["Active", "Disabled"]
    relay_global = global_side["templates/relay.yaml"]["Resources"]["StreamRelayFunction"]["Properties"]
    relay_china = china_side["templates/relay.yaml"]["Resources"]["StreamRelayFunction"]["Properties"]
    assert relay_global["Tracing"] == "Active"
    assert "Tracing" not in relay_china
    assert (
        china_side["templates/relay.yaml"]["Globals"]["Function"]["Environment"]["Variables"][
            "POWERTOOLS_TRACE_DISABLED"
        ]
        == "true"
    )
    assert (
        "POWERTOOLS_TRACE_DISABLED"
        not in global_side["templates/relay.yaml"]["Globals"]["Function"]["Environment"]["Variables"]
    )


@pytest.mark.parametrize("name", [n for n, s in SCENARIOS.items() if s.partition == "aws-cn"])
def test_china_renders_name_no_global_arn(name):
    text = json.dumps(RENDERS[name])
    assert "arn:aws:" not in text
    assert "arn:aws-cn:" in text


@pytest.mark.parametrize("name", [n for n in SCENARIOS if "bidirectional" in n or n == "full-load-cross-partition"])
def test_the_relay_reads_its_peer_keys_from_exactly_one_place(name):
    scenario, rendered = SCENARIOS[name], RENDERS[name]
    statements = {s["Sid"]: s for s in role_statements(rendered, "StreamRelayRole")}
    env = rendered["templates/relay.yaml"]["Resources"]["StreamRelayFunction"]["Properties"]["Environment"]["Variables"]
    p = scenario.parameters
    ours = {
        "ReadThePeerKeysSecret",
        "ReadThePeerKeysParameter",
        "ReadThePeerKeysParameters",
        "WriteThePeerStreamInThisAccount",
    }
    (present,) = ours & set(statements)
    arn = f"arn:{scenario.partition}:ssm:{scenario.region}:111111111111:parameter"
    if p.get("RelayPeerKeysSecretArn"):
        assert present == "ReadThePeerKeysSecret"
        assert statements[present]["Resource"] == p["RelayPeerKeysSecretArn"]
    elif p.get("RelayPeerKeysParameterName"):
        assert present == "ReadThePeerKeysParameter"
        assert statements[present]["Resource"] == arn + p["RelayPeerKeysParameterName"]
    elif p.get("RelayPeerKeysParameterPrefix"):
        assert present == "ReadThePeerKeysParameters"
        assert statements[present]["Action"] == "ssm:GetParameter"
        prefix = p["RelayPeerKeysParameterPrefix"]
        assert statements[present]["Resource"] == [f"{arn}{prefix}AccessKey", f"{arn}{prefix}SecretKey"]
        assert env["PEER_CREDENTIALS_PARAMETER_PREFIX"] == prefix
    else:
        assert present == "WriteThePeerStreamInThisAccount"
        assert statements[present]["Resource"] == (
            f"arn:{scenario.partition}:kinesis:{p['PeerRegion']}:111111111111:stream/{p['PeerStreamName']}"
        )


def test_the_peer_writer_user_exists_only_when_asked_for():
    for name in ("bidirectional-secret", "bidirectional-own-role"):
        rendered = RENDERS[name]
        wanted = SCENARIOS[name].parameters.get("RelayCreatePeerWriterUser", "true") == "true"
        assert ("PeerWriterUser" in rendered["templates/relay.yaml"]["Resources"]) is wanted
        assert ("PeerWriterUserName" in rendered["template.yaml"]["Outputs"]) is wanted


def test_the_full_load_enables_this_stacks_replicator_or_the_one_named():
    one_way = RENDERS["full-load"]["templates/full-load.yaml"]["Resources"]["FullLoadControlFunction"]
    env = one_way["Properties"]["Environment"]["Variables"]
    assert env["REPLICATOR_FUNCTION_NAME"].startswith("ddb-bridge-")  # TableReplication's output, at deploy
    assert env["TARGET_ROLE_ARN"] == SCENARIOS["full-load"].parameters["LoaderRoleArn"]
    cross = RENDERS["full-load-cross-partition"]["templates/full-load.yaml"]["Resources"]["FullLoadControlFunction"]
    env = cross["Properties"]["Environment"]["Variables"]
    p = SCENARIOS["full-load-cross-partition"].parameters
    assert env["REPLICATOR_FUNCTION_NAME"] == p["FullLoadReplicatorFunctionName"]
    assert env["EVENT_SOURCE_MAPPING_UUID"] == p["FullLoadEventSourceMappingUuid"]
    assert env["PEER_CREDENTIALS_SECRET"] == p["PeerCredentialsSecretArn"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_stream_event_sources_start_where_the_scenario_says(name):
    start = SCENARIOS[name].parameters.get("StartingPosition", "TRIM_HORIZON")
    for fn in functions(RENDERS[name]).values():
        for event in fn["Properties"].get("Events", {}).values():
            if event["Type"] in ("DynamoDB", "Kinesis"):  # an SQS event source has no position
                assert event["Properties"]["StartingPosition"] == start


def test_what_the_relay_stream_is_called_is_predictable_across_stacks():
    # each side names the other's stream in advance: <root stack>-relay-inbound, whatever the nested stack's name
    stream = RENDERS["bidirectional-secret"]["templates/relay.yaml"]["Resources"]["RelayStream"]
    assert stream["Properties"]["Name"] == "ddb-bridge-relay-inbound"
    relay = RENDERS["bidirectional-secret"]["templates/relay.yaml"]["Resources"]["StreamRelayFunction"]
    assert relay["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "ddb-bridge-stream-relay"


@pytest.mark.parametrize("name", TARGET_SCENARIOS)
def test_target_account_renders(name):
    scenario = TARGET_SCENARIOS[name]
    rendered = render_target(scenario)
    roles = {r["Properties"]["RoleName"] for r in rendered["Resources"].values() if r["Type"] == "AWS::IAM::Role"}
    loads = "LoaderPrincipalArns" in scenario.parameters
    buckets = "S3TargetBucketName" in scenario.parameters
    assert roles == (
        {"ddb-bridge-target-writer"}
        | ({"ddb-bridge-target-loader"} if loads else set())
        | ({"ddb-bridge-target-s3-writer"} if buckets else set())
    )
    assert ("ExportBucket" in rendered["Resources"]) is loads
    for node in walk(rendered["Resources"]):
        if isinstance(node, dict) and node.get("Effect") == "Allow" and "Principal" not in node:
            assert "*" not in as_list(node["Resource"]), node
