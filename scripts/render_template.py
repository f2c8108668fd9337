"""The whole SAM application (template.yaml + templates/*.yaml) as data: load it, check its Rules, render a scenario.

    python scripts/render_template.py --out DIR [--sam]   every scenario of SCENARIOS rendered to plain templates
    python scripts/render_template.py --readme            the README's Parameters section, from the templates

A render resolves what CloudFormation would for one scenario's parameters and partition: Conditions,
Fn::If, AWS::NoValue, Refs to parameters and pseudo parameters, Fn::Sub/Join/Split/Select over known
values. Resources, outputs and statements whose condition is false disappear; nested applications are
rendered with the parameters the root passes them (outputs of other stacks become placeholders of the
right shape). `--sam` then runs SAM's own transform (samtranslator, from the SAM CLI's virtualenv), so
checkov reads the CloudFormation that would be deployed. Nothing here reaches AWS.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ROOT_TEMPLATE = ROOT / "template.yaml"
TARGET_TEMPLATE = ROOT / "target-account.yaml"
NO_VALUE = object()  # AWS::NoValue while resolving; removed from every dict and list
PSEUDO = ("AWS::Partition", "AWS::Region", "AWS::AccountId", "AWS::StackName", "AWS::URLSuffix", "AWS::StackId")


class RenderError(ValueError):
    """A template or a scenario cannot be rendered (unknown parameter, value out of its constraints ...)."""


# ---- loading ---------------------------------------------------------------------------------------------
def load(path: Path) -> dict[str, Any]:
    """One template file, decoded the CloudFormation way (short-form intrinsics become Fn:: keys); a fresh copy."""
    return copy.deepcopy(_decoded(path.resolve(), path.stat().st_mtime_ns))


@functools.cache
def _decoded(path: Path, mtime_ns: int) -> dict[str, Any]:
    from cfnlint.decode import decode  # the linter's CloudFormation-aware YAML reader

    template, problems = decode(str(path))
    if template is None or problems:
        raise RenderError(f"{path}: {problems}")
    return dict(template)


@dataclass
class Template:
    """One file of the application: its path from the repository root, its body, and who nests it."""

    path: Path
    body: dict[str, Any]
    nested_as: str | None = None  # the root's AWS::Serverless::Application logical id, None for the root

    @property
    def name(self) -> str:
        """The path from the repository root, e.g. templates/relay.yaml."""
        return self.path.relative_to(ROOT).as_posix()

    def resources(self, kind: str | None = None) -> dict[str, dict[str, Any]]:
        """Resources of this file, optionally of one type."""
        found = self.body.get("Resources", {})
        return {k: r for k, r in found.items() if kind is None or r.get("Type") == kind}

    def local_path(self, uri: str) -> Path:
        """A CodeUri / DefinitionUri / ContentUri / Location of this file, as a path (relative to this file)."""
        return (self.path.parent / uri).resolve()


def application(root: Path = ROOT_TEMPLATE) -> list[Template]:
    """The root template and every template it nests (local AWS::Serverless::Application), root first."""
    top = Template(root, load(root))
    found = [top]
    for logical_id, resource in top.resources("AWS::Serverless::Application").items():
        location = resource["Properties"]["Location"]
        if isinstance(location, str) and not location.startswith(("s3://", "https://")):
            found.append(Template(top.local_path(location), load(top.local_path(location)), logical_id))
    return found


def every_template() -> list[Template]:
    """The application and target-account.yaml: every template this repository deploys."""
    return [*application(), Template(TARGET_TEMPLATE, load(TARGET_TEMPLATE))]


def find_resource(logical_id: str, templates: list[Template] | None = None) -> tuple[Template, dict[str, Any]]:
    """The one resource with this logical id anywhere in the application, and the template holding it."""
    hits = [(t, t.resources()[logical_id]) for t in templates or application() if logical_id in t.resources()]
    if len(hits) != 1:
        raise RenderError(f"{logical_id}: expected one resource, found {len(hits)}")
    return hits[0]


# ---- parameters, conditions, rules -----------------------------------------------------------------------
def parameter_values(template: dict[str, Any], given: dict[str, str], where: str) -> dict[str, Any]:
    """Every parameter's value (given, else its default) checked against its constraints; lists split."""
    declared = template.get("Parameters", {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise RenderError(f"{where}: unknown parameters {unknown}")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in given:
            raw = str(given[name])
        elif "Default" in spec:
            raw = str(spec["Default"])
        else:
            raise RenderError(f"{where}: parameter {name} has no value and no default")
        kind = spec.get("Type", "String")
        parts = raw.split(",") if kind == "CommaDelimitedList" else [raw]
        for part in parts:
            _check_constraints(name, spec, part, where)
        if kind == "CommaDelimitedList":
            values[name] = parts
        elif kind == "Number":  # a number where SAM's transform validates one (BatchSize ...)
            values[name] = int(raw) if re.fullmatch(r"-?\d+", raw) else float(raw)
        else:
            values[name] = raw
    return values


def _check_constraints(name: str, spec: dict[str, Any], value: str, where: str) -> None:
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(a) for a in allowed]:
        raise RenderError(f"{where}: {name}={value!r} is not one of {allowed}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and spec.get("Type", "String") == "String" and not re.fullmatch(pattern, value):
        raise RenderError(f"{where}: {name}={value!r} does not match {pattern}")
    if spec.get("Type") == "Number":
        number = float(value)
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise RenderError(f"{where}: {name}={value} is below {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise RenderError(f"{where}: {name}={value} is above {spec['MaxValue']}")


def failed_rules(template: dict[str, Any], given: dict[str, str]) -> list[str]:
    """The AssertDescriptions of every Rules assertion these parameters break (CloudFormation's check)."""
    values = parameter_values(template, given, "rules")

    def value(node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            ((fn, args),) = node.items()
            if fn == "Ref":
                return values[args]
            if fn == "Fn::Equals":
                return _same(value(args[0]), value(args[1]))
            if fn == "Fn::Not":
                return not value(args[0])
            if fn == "Fn::And":
                return all(value(a) for a in args)
            if fn == "Fn::Or":
                return any(value(a) for a in args)
            if fn == "Fn::Contains":
                return value(args[1]) in value(args[0])
            raise RenderError(f"rules: {fn} is not evaluated here")
        return node

    failed = []
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not value(rule["RuleCondition"]):
            continue
        failed += [a["AssertDescription"] for a in rule["Assertions"] if not value(a["Assert"])]
    return failed


def _same(a: Any, b: Any) -> bool:
    """Fn::Equals: CloudFormation compares parameter values as strings."""
    return (str(a) if isinstance(a, (int, float)) else a) == (str(b) if isinstance(b, (int, float)) else b)


@dataclass
class Context:
    """What a render knows: parameter values, pseudo parameters, and the conditions they decide."""

    template: dict[str, Any]
    values: dict[str, Any]
    pseudo: dict[str, str]
    conditions: dict[str, bool] = field(default_factory=dict)

    def condition(self, name: str) -> bool:
        """The value of one named condition (evaluated once)."""
        if name not in self.conditions:
            self.conditions[name] = bool(self.evaluate(self.template["Conditions"][name]))
        return self.conditions[name]

    def evaluate(self, node: Any) -> Any:
        """A condition expression (Fn::Equals/And/Or/Not, Condition) over resolved values."""
        if isinstance(node, dict) and len(node) == 1:
            ((fn, args),) = node.items()
            if fn == "Condition":
                return self.condition(args)
            if fn == "Fn::Equals":
                return _same(self.resolve(args[0]), self.resolve(args[1]))
            if fn == "Fn::Not":
                return not self.evaluate(args[0])
            if fn == "Fn::And":
                return all(self.evaluate(a) for a in args)
            if fn == "Fn::Or":
                return any(self.evaluate(a) for a in args)
        return self.resolve(node)

    def known(self, name: str) -> Any:
        """The value a Ref or a ${} would take, or None when it is a resource's (unknown before deploy)."""
        if name in self.values:
            return self.values[name]
        return self.pseudo.get(name)

    def resolve(self, node: Any) -> Any:
        """Resolve every intrinsic whose value is known; keep the rest (Refs to resources, GetAtt)."""
        if isinstance(node, list):
            return [v for v in (self.resolve(n) for n in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((fn, args),) = node.items()
            if fn == "Ref":
                if args == "AWS::NoValue":
                    return NO_VALUE
                value = self.known(args)
                return node if value is None else value
            if fn == "Fn::If":
                return self.resolve(args[1] if self.condition(args[0]) else args[2])
            if fn == "Fn::Sub":
                return self._sub(args)
            if fn == "Fn::Join":
                parts = self.resolve(args[1])
                if isinstance(parts, list) and all(isinstance(p, str) for p in parts):
                    return str(args[0]).join(parts)
                return {fn: [args[0], parts]}
            if fn == "Fn::Split":
                text = self.resolve(args[1])
                return text.split(args[0]) if isinstance(text, str) else {fn: [args[0], text]}
            if fn == "Fn::Select":
                index, items = self.resolve(args[0]), self.resolve(args[1])
                if isinstance(items, list) and str(index).isdigit():
                    return items[int(index)]
                return {fn: [index, items]}
        resolved = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def _sub(self, args: Any) -> Any:
        text, variables = (args, {}) if isinstance(args, str) else (args[0], self.resolve(args[1]))
        unresolved = dict(variables)

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            value = variables.get(name) if name in variables else self.known(name)
            if isinstance(value, (str, int, float)):
                unresolved.pop(name, None)
                return str(value)
            return match.group(0)

        result = re.sub(r"\$\{([A-Za-z0-9_:.]+)\}", replace, text)
        if "${" not in result:
            return result
        return {"Fn::Sub": [result, unresolved] if unresolved else result}


def render(
    template: dict[str, Any], given: dict[str, str], pseudo: dict[str, str], where: str = "template"
) -> dict[str, Any]:
    """The template as CloudFormation would see it for these parameters: no Conditions, no Rules, no Parameters."""
    failed = failed_rules(template, given)
    if failed:
        raise RenderError(f"{where}: the template's Rules refuse these parameters: {failed}")
    context = Context(template, parameter_values(template, given, where), pseudo)
    out: dict[str, Any] = {k: v for k, v in template.items() if k not in ("Parameters", "Conditions", "Rules")}
    for section in ("Globals", "Outputs"):
        if section in template:
            out[section] = context.resolve(_keep(template[section], context))
    out["Resources"] = {}
    for name, resource in _keep(template["Resources"], context).items():
        out["Resources"][name] = context.resolve(resource)
    return out


def _keep(section: dict[str, Any], context: Context) -> dict[str, Any]:
    """The entries whose Condition holds, without their Condition key."""
    kept = {}
    for name, entry in section.items():
        if isinstance(entry, dict) and "Condition" in entry and isinstance(entry["Condition"], str):
            if not context.condition(entry["Condition"]):
                continue
            entry = {k: v for k, v in entry.items() if k != "Condition"}
        kept[name] = entry
    return kept


# ---- scenarios -------------------------------------------------------------------------------------------
ACCOUNT = "111111111111"
TARGET_ACCOUNT = "222222222222"


@dataclass(frozen=True)
class Scenario:
    """One way of deploying: the region (its partition follows) and the root stack's parameters."""

    region: str
    parameters: dict[str, str]
    stack: str = "ddb-bridge"

    @property
    def partition(self) -> str:
        """aws-cn for China regions, aws elsewhere."""
        return "aws-cn" if self.region.startswith("cn-") else "aws"

    def pseudo(self, stack: str | None = None) -> dict[str, str]:
        """The pseudo parameters CloudFormation gives a stack of this scenario."""
        suffix = "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com"
        name = stack or self.stack
        return {
            "AWS::Partition": self.partition,
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": name,
            "AWS::StackId": f"arn:{self.partition}:cloudformation:{self.region}:{ACCOUNT}:stack/{name}/0",
            "AWS::URLSuffix": suffix,
        }


def _stream(region: str, table: str = "orders") -> str:
    partition = "aws-cn" if region.startswith("cn-") else "aws"
    return f"arn:{partition}:dynamodb:{region}:{ACCOUNT}:table/{table}/stream/2026-01-01T00:00:00.000"


def _role(partition: str, name: str) -> str:
    return f"arn:{partition}:iam::{TARGET_ACCOUNT}:role/{name}"


def _secret(name: str, region: str = "ap-southeast-1") -> str:
    return f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:ddb-bridge/{name}-AbCdEf"


_ONE_WAY = {"Scenario": "one-way", "SourceTableName": "orders", "TargetTableName": "orders"}
_BIDI = {"Scenario": "bidirectional", "SourceTableName": "orders"}
_VPC = {"SubnetIds": "subnet-0a1b2c3d,subnet-0e1f2a3b", "SecurityGroupIds": "sg-0a1b2c3d"}

# Every scenario the templates' conditions can take; checkov reads each render (make checkov).
SCENARIOS: dict[str, Scenario] = {
    "one-way-cross-account": Scenario(
        "us-east-1",
        {
            **_ONE_WAY,
            "SourceStreamArn": _stream("us-east-1"),
            "TargetRegion": "eu-west-1",
            "TargetRoleArn": _role("aws", "ddb-bridge-target-writer"),
            "TargetExternalId": "external-id-1",
            "BackfillEnabled": "false",
        },
    ),
    "one-way-same-account": Scenario(
        "eu-west-1",
        {
            **_ONE_WAY,
            "SourceStreamArn": _stream("eu-west-1"),
            "TargetRegion": "eu-central-1",
            "ReplicationMode": "lww",
            "TombstoneTableName": "orders-tombstones",
            "Tracing": "PassThrough",
        },
    ),
    "one-way-china-vpc": Scenario(
        "cn-north-1",
        {
            **_ONE_WAY,
            **_VPC,
            "SourceStreamArn": _stream("cn-north-1"),
            "TargetRoleArn": _role("aws-cn", "ddb-bridge-target-writer"),
            "TargetExternalId": "external-id-1",
            "LoaderRoleArn": _role("aws-cn", "ddb-bridge-target-loader"),
            "StartingPosition": "LATEST",
            "AlarmTopicArn": f"arn:aws-cn:sns:cn-north-1:{ACCOUNT}:ddb-bridge-alarms",
            "HttpsProxyUrl": "http://proxy.internal:3128",
        },
    ),
    "full-load": Scenario(
        "us-east-1",
        {
            **_ONE_WAY,
            "SourceStreamArn": _stream("us-east-1"),
            "ReplicationEnabled": "false",
            "TargetRoleArn": _role("aws", "ddb-bridge-target-writer"),
            "TargetExternalId": "external-id-1",
            "LoaderRoleArn": _role("aws", "ddb-bridge-target-loader"),
            "FullLoadExportBucket": "ddb-bridge-exports-222222222222",
            "FullLoadExportBucketOwner": TARGET_ACCOUNT,
        },
    ),
    "full-load-same-account-vpc": Scenario(
        "eu-west-1",
        {
            **_ONE_WAY,
            **_VPC,
            "SourceStreamArn": _stream("eu-west-1"),
            "TargetRegion": "eu-west-2",
            "ReplicationEnabled": "false",
            "FullLoadExportBucket": "ddb-bridge-exports",
        },
    ),
    "full-load-cross-partition": Scenario(
        "ap-southeast-1",
        {
            **_BIDI,
            "SourceStreamArn": _stream("ap-southeast-1"),
            "PeerRegion": "cn-north-1",
            "PeerStreamName": "ddb-bridge-bj-relay-inbound",
            "RelayPeerKeysSecretArn": _secret("peer-keys"),
            "TargetTableName": "orders",
            "TargetRegion": "cn-north-1",
            "ReplicationEnabled": "false",
            "FullLoadExportBucket": "ddb-bridge-exports",
            "PeerCredentialsSecretArn": _secret("loader"),
            "PeerBucket": "ddb-bridge-imports-cn",
            "FullLoadReplicatorFunctionName": "ddb-bridge-sg-StreamRelayFunction-AbCdEf",
            "FullLoadEventSourceMappingUuid": "0f3c2a1b-4d5e-4f60-8a7b-9c0d1e2f3a4b",
        },
    ),
    "bidirectional-secret": Scenario(
        "ap-southeast-1",
        {
            **_BIDI,
            "SourceStreamArn": _stream("ap-southeast-1"),
            "PeerRegion": "cn-north-1",
            "PeerStreamName": "ddb-bridge-bj-relay-inbound",
            "RelayPeerKeysSecretArn": _secret("peer-keys"),
        },
    ),
    "bidirectional-parameter": Scenario(
        "cn-north-1",
        {
            **_BIDI,
            "SourceStreamArn": _stream("cn-north-1"),
            "PeerRegion": "ap-southeast-1",
            "PeerStreamName": "ddb-bridge-sg-relay-inbound",
            "RelayPeerKeysParameterName": "/ddb-bridge/peer-keys",
            "LocalRegionTag": "beijing",
            "RelayStreamMode": "PROVISIONED",
            "RelayStreamShards": "2",
        },
    ),
    "bidirectional-prefix-vpc": Scenario(
        "cn-northwest-1",
        {
            **_BIDI,
            **_VPC,
            "SourceStreamArn": _stream("cn-northwest-1"),
            "PeerRegion": "ap-southeast-1",
            "PeerStreamName": "ddb-bridge-sg-relay-inbound",
            "RelayPeerKeysParameterPrefix": "/DDBReplication/TableCN/",
            "StartingPosition": "LATEST",
        },
    ),
    "buckets-same-account": Scenario(
        "us-east-1",
        {
            "Scenario": "buckets-only",
            "BucketSourceName": "orders-media",
            "CreateSourceBucket": "true",
            "SourceBucketVersioning": "true",
            "BucketTargetName": "orders-media-copy",
            "BucketTargetRegion": "eu-west-1",
            "CreateTargetBucket": "true",
        },
    ),
    "buckets-beside-one-way-cross-account": Scenario(
        "us-east-1",
        {
            **_ONE_WAY,
            "SourceStreamArn": _stream("us-east-1"),
            "TargetRoleArn": _role("aws", "ddb-bridge-target-writer"),
            "TargetExternalId": "external-id-1",
            "BucketSourceName": "orders-media",
            "BucketTargetName": "orders-media-target",
            "BucketTargetRoleArn": _role("aws", "ddb-bridge-target-s3-writer"),
            "BucketTargetExternalId": "external-id-2",
            "BucketSourcePrefix": "invoices/",
            "BucketTargetPrefix": "archive/invoices/",
            "BucketBackfillEnabled": "false",
        },
    ),
    "buckets-cross-partition-vpc": Scenario(
        "cn-north-1",
        {
            **_VPC,
            "Scenario": "buckets-only",
            "BucketSourceName": "orders-media-cn",
            "BucketTargetName": "orders-media-sg",
            "BucketTargetRegion": "ap-southeast-1",
            "BucketPeerCredentialsSecretArn": (
                f"arn:aws-cn:secretsmanager:cn-north-1:{ACCOUNT}:secret:ddb-bridge/s3-peer-keys-AbCdEf"
            ),
            "BucketCopyMode": "stream",
            "BucketTargetKmsKeyId": "alias/orders-media",
            "HttpsProxyUrl": "http://proxy.internal:3128",
        },
    ),
    "bidirectional-own-role": Scenario(
        "us-east-1",
        {
            **_BIDI,
            "SourceStreamArn": _stream("us-east-1"),
            "PeerRegion": "us-west-2",
            "PeerStreamName": "ddb-bridge-west-relay-inbound",
            "RelayCreatePeerWriterUser": "false",
            "Tracing": "Active",
        },
    ),
}

# target-account.yaml: the writer role alone, and with the loader role and the export bucket.
TARGET_SCENARIOS: dict[str, Scenario] = {
    "target-writer": Scenario(
        "eu-west-1",
        {
            "ReplicatorRoleArn": f"arn:aws:iam::{ACCOUNT}:role/ddb-bridge-TableReplicatorRole-AbCdEf",
            "ExternalId": "external-id-1",
            "TargetTableName": "orders",
        },
        stack="ddb-bridge-target",
    ),
    "target-full-load": Scenario(
        "cn-north-1",
        {
            "ReplicatorRoleArn": f"arn:aws-cn:iam::{ACCOUNT}:role/ddb-bridge-TableReplicatorRole-AbCdEf",
            "ExternalId": "external-id-1",
            "TargetTableName": "orders",
            "TombstoneTableName": "orders-tombstones",
            "LoaderPrincipalArns": (
                f"arn:aws-cn:iam::{ACCOUNT}:role/ddb-bridge-FullLoadControlRole-AbCdEf,"
                f"arn:aws-cn:iam::{ACCOUNT}:role/ddb-bridge-BackfillRole-AbCdEf"
            ),
            "ExportBucketName": "ddb-bridge-exports-222222222222",
            "ExportWriterRoleArn": f"arn:aws-cn:iam::{ACCOUNT}:role/ddb-bridge-FullLoadControlRole-AbCdEf",
        },
        stack="ddb-bridge-target",
    ),
    "target-s3": Scenario(
        "eu-west-1",
        {
            "ReplicatorRoleArn": f"arn:aws:iam::{ACCOUNT}:role/ddb-bridge-TableReplicatorRole-AbCdEf",
            "ExternalId": "external-id-1",
            "TargetTableName": "orders",
            "S3TargetBucketName": "orders-media-target",
            "S3WriterPrincipalArns": (
                f"arn:aws:iam::{ACCOUNT}:role/ddb-bridge-BucketReplicatorRole-AbCdEf,"
                f"arn:aws:iam::{ACCOUNT}:role/ddb-bridge-BucketBackfillRole-AbCdEf"
            ),
            "S3SourceBucketArn": "arn:aws:s3:::orders-media",
        },
        stack="ddb-bridge-target",
    ),
}


def _placeholder(node: Any, name: str, scenario: Scenario) -> str:
    """A value of the right shape for what only a deploy knows (another stack's output, a resource's Ref)."""
    p, r = scenario.partition, scenario.region
    prefix = f"{scenario.stack}-{name}"
    if node == {"Ref": "BridgeLayer"}:
        return f"arn:{p}:lambda:{r}:{ACCOUNT}:layer:{scenario.stack}-ddb-bridge:1"
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        output = str(node["Fn::GetAtt"][1]).removeprefix("Outputs.")
        if output.endswith("QueueUrl"):
            return f"https://sqs.{r}.{scenario.pseudo()['AWS::URLSuffix']}/{ACCOUNT}/{prefix}"
        if output.endswith("QueueArn"):
            return f"arn:{p}:sqs:{r}:{ACCOUNT}:{prefix}"
        if output.endswith("FunctionName"):
            return prefix[:64]
        if output.endswith("MappingUuid"):
            return "7e57ab1e-0000-4000-8000-000000000001"
    raise RenderError(f"{name}: no placeholder for {node}")


def render_scenario(scenario: Scenario) -> dict[str, dict[str, Any]]:
    """The root and every nested template the scenario deploys, rendered, by their path in the repository."""
    templates = application()
    root = templates[0]
    rendered = {root.name: render(root.body, scenario.parameters, scenario.pseudo(), root.name)}
    apps = rendered[root.name]["Resources"]
    for child in templates[1:]:
        if child.nested_as not in apps:
            continue  # its condition is false in this scenario
        passed = apps[child.nested_as]["Properties"].get("Parameters", {})
        given = {k: _placeholder(v, k, scenario) if isinstance(v, dict) else str(v) for k, v in passed.items()}
        nested_stack = f"{scenario.stack}-{child.nested_as}-0A1B2C3D4E5F"
        rendered[child.name] = render(child.body, given, scenario.pseudo(nested_stack), child.name)
    return rendered


def render_target(scenario: Scenario) -> dict[str, Any]:
    """target-account.yaml rendered for one of TARGET_SCENARIOS."""
    return render(load(TARGET_TEMPLATE), scenario.parameters, scenario.pseudo(), TARGET_TEMPLATE.name)


# ---- SAM's transform (run with the SAM CLI's virtualenv: it has samtranslator) ---------------------------
def sam_translate(template: dict[str, Any], scenario: Scenario, origin: str) -> dict[str, Any]:
    """SAM's transform of a rendered template; local artifacts become S3 locations as `sam package` makes them."""
    from samtranslator.translator.arn_generator import ArnGenerator
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        """The templates name no managed policy; a lookup would be a bug (and would need AWS)."""

        def load(self) -> dict[str, str]:
            raise RenderError(f"{origin}: SAM asked for managed policies; every role here is explicit")

    logging.getLogger("samtranslator").setLevel(logging.ERROR)  # its metrics nag about publishing
    ArnGenerator.BOTO_SESSION_REGION_NAME = scenario.region
    os.environ["AWS_DEFAULT_REGION"] = scenario.region  # SAM's pseudo parameters come from a boto3 session
    packaged = copy.deepcopy(template)
    for name, resource in packaged.get("Resources", {}).items():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://ddb-bridge-artifacts/{name}/{Path(props[key]).name}"
        if resource.get("Type") == "AWS::Serverless::Application":
            props["Location"] = f"https://s3.{scenario.region}.amazonaws.com/ddb-bridge-artifacts/{name}.template"
    translated = transform(packaged, dict(scenario.pseudo()), NoManagedPolicies(), passthrough_metadata=True)  # type: ignore[arg-type]
    return dict(translated)


def write_renders(out: Path, sam: bool) -> list[Path]:
    """Every scenario (and target-account variant) rendered as JSON files under `out`."""
    written = []
    for name, scenario in SCENARIOS.items():
        for path, body in render_scenario(scenario).items():
            if sam:
                body = sam_translate(body, scenario, f"{name}/{path}")
            written.append(_write(out / name / Path(path).with_suffix(".json"), body))
    for name, scenario in TARGET_SCENARIOS.items():
        written.append(_write(out / name / "target-account.json", render_target(scenario)))
    return written


def _write(path: Path, body: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=1, default=str))
    return path


# ---- the README's Parameters section ---------------------------------------------------------------------
README_START = "## Parameters (`template.yaml`)"


def _cell(value: Any) -> str:
    """Table cell text: pipes escaped, and <placeholders> kept visible (Markdown would take them for HTML)."""
    return str(value).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def readme_parameters() -> str:
    """The README's Parameters section: every root parameter by group, then what the root wires itself."""
    templates = application()
    root = templates[0]
    params = root.body["Parameters"]
    passed_to: dict[str, list[str]] = {name: [] for name in params}
    wired: dict[str, list[Template]] = {}
    for child in templates[1:]:
        passed = root.resources()[str(child.nested_as)]["Properties"].get("Parameters", {})
        for name in child.body.get("Parameters", {}):
            if name in params and name in passed:
                passed_to[name].append(Path(child.name).stem)
            elif name not in params:
                wired.setdefault(name, []).append(child)
    lines = [
        README_START,
        "",
        "Every parameter of the root template, in the groups `sam deploy --guided` and the console show; *Passed to*",
        "names the nested templates (`templates/`) that receive it. This section is generated from the templates",
        "(`python scripts/render_template.py --readme`); a test keeps it equal to them.",
    ]
    groups = root.body["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    for group in groups:
        lines += ["", f"**{group['Label']['default']}**", "", "| Parameter | Default | Meaning | Passed to |"]
        lines.append("|---|---|---|---|")
        for name in group["Parameters"]:
            spec = params[name]
            default = f"`{spec['Default']}`" if str(spec.get("Default", "")) != "" else "empty"
            meaning = _cell(spec.get("Description", ""))
            if "AllowedValues" in spec:
                meaning += f" ({', '.join(str(v) for v in spec['AllowedValues'])})"
            targets = ", ".join(passed_to[name]) or "template.yaml"
            lines.append(f"| `{name}` | {default} | {meaning} | {targets} |")
    lines += [
        "",
        "**Wired by `template.yaml`** (parameters of the nested templates that the root sets itself, never by hand)",
        "",
        "| Parameter | Meaning | Templates |",
        "|---|---|---|",
    ]
    for name, owners in wired.items():
        meaning = _cell(owners[0].body["Parameters"][name].get("Description", ""))
        lines.append(f"| `{name}` | {meaning} | {', '.join(Path(t.name).stem for t in owners)} |")
    return "\n".join(lines) + "\n"


def readme_section(readme: str) -> str:
    """The Parameters section as the README has it (from its heading to the next ## heading)."""
    start = readme.index(README_START)
    end = readme.index("\n## ", start + len(README_START))
    return readme[start : end + 1]


def walk(node: Any) -> Iterator[Any]:
    """Every dict, list and value of a template, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write every scenario's render under this folder")
    parser.add_argument("--sam", action="store_true", help="apply SAM's transform (needs samtranslator)")
    parser.add_argument("--readme", action="store_true", help="print the README's Parameters section")
    args = parser.parse_args()
    if args.readme:
        sys.stdout.write(readme_parameters())
    if args.out:
        written = write_renders(args.out, args.sam)
        variants = f"{len(SCENARIOS)} scenarios, {len(TARGET_SCENARIOS)} target-account variants"
        print(f"rendered {variants}: {len(written)} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
