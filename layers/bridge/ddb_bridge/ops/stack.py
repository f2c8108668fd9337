"""A deployed stack as the CLI sees it: its outputs (the root's, then its nested stacks'), and the replicator's stream.

The root stack surfaces its nested applications' outputs; an output only a nested stack has is found there
too (the CLI walks the nested stacks, depth first), so the operator never types an ARN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

NESTED_STACK = "AWS::CloudFormation::Stack"


class StackError(Exception):
    """The stack, one of its outputs, or a resource it names cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Stack:
    """A stack's name, region and every output it surfaces (root first, nested stacks after)."""

    name: str
    region: str
    outputs: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        """An output's value; None when absent or empty."""
        return self.outputs.get(key) or None

    def require(self, key: str, why: str) -> str:
        """An output's value, or a StackError naming the output and what needs it."""
        value = self.get(key)
        if value is None:
            raise StackError(
                f"stack {self.name} ({self.region}) has no output {key}, which {why}; "
                "deploy the version of the template that has it, or give the value explicitly"
            )
        return value


def read_stack(cloudformation: Any, name: str, region: str) -> Stack:
    """Describe the stack and its nested stacks; their outputs, the root's taking precedence."""
    outputs: dict[str, str] = {}
    _collect(cloudformation, name, outputs, seen=set(), root=True)
    return Stack(name, region, outputs)


def _collect(cloudformation: Any, name: str, outputs: dict[str, str], *, seen: set[str], root: bool) -> None:
    try:
        (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if root and exc.response.get("Error", {}).get("Code") == "ValidationError":
            raise StackError(f"no stack named {name}: check --stack-name, --region and --profile") from exc
        raise
    if stack["StackId"] in seen:
        return
    seen.add(stack["StackId"])
    for output in stack.get("Outputs", []):
        outputs.setdefault(output["OutputKey"], str(output.get("OutputValue", "")))
    paginator = cloudformation.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack["StackId"]):
        for resource in page["StackResourceSummaries"]:
            nested = resource.get("PhysicalResourceId")
            if resource["ResourceType"] == NESTED_STACK and nested:
                _collect(cloudformation, nested, outputs, seen=seen, root=False)


@dataclass(frozen=True)
class EventSource:
    """A function's event source mapping on a DynamoDB stream."""

    uuid: str
    stream_arn: str
    state: str
    starting_position: str | None

    @property
    def table(self) -> str:
        """The table whose stream it is (arn:...:table/<name>/stream/<label>)."""
        return self.stream_arn.split(":table/", 1)[1].split("/stream/", 1)[0]


def stream_event_source(lambda_client: Any, function: str) -> EventSource:
    """The function's event source mapping on a DynamoDB stream (the replicator has exactly one)."""
    mappings: list[dict[str, Any]] = []
    paginator = lambda_client.get_paginator("list_event_source_mappings")
    for page in paginator.paginate(FunctionName=function):
        mappings.extend(
            m
            for m in page["EventSourceMappings"]
            if ":dynamodb:" in m["EventSourceArn"] and "/stream/" in m["EventSourceArn"]
        )
    if len(mappings) != 1:
        raise StackError(
            f"function {function} has {len(mappings)} event source mappings on a DynamoDB stream; expected one"
        )
    (mapping,) = mappings
    return EventSource(
        uuid=str(mapping["UUID"]),
        stream_arn=str(mapping["EventSourceArn"]),
        state=str(mapping.get("State", "")),
        starting_position=mapping.get("StartingPosition"),
    )
