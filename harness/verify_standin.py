"""A stand-in for the verify workflow, until it is merged: a state machine whose one task compares both tables.

It keeps the verify workflow's contract (input fields, output shape: counts, `clean`, samples, report), so
the CLI is driven exactly as it will drive the real workflow. The comparison is the harness oracle: every
item of both tables, read consistently when the execution runs, compared as DynamoDB returns them; a key
that differs is read again on both sides after `recheckDelaySeconds` (default 1) and counts as in flight
if it then agrees. It does not repair or write a report file (`repair: true` is counted as 0 repaired).
Switching to the real workflow: deploy functions/verify and create statemachine/verify.asl.json instead
of `deploy_verify_standin` (the CLI and its tests do not change).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import boto3

from .lambda_bridge import BRIDGE
from .world import scan_all

Tables = Callable[[], tuple[Any, str, Any, str]]  # () -> (source client, source table, target client, target table)


class StandInVerify:
    """Quacks like a LocalFunction for the Lambda bridge: `name` and `handler(event, context)`."""

    def __init__(self, name: str, tables: Tables) -> None:
        self.name = name
        self.tables = tables

    def handler(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Compare both tables now; the verify workflow's output shape."""
        options = event.get("input") or {}
        started = int(time.time() * 1000)
        source_client, source_table, target_client, target_table = self.tables()
        source = scan_all(source_client, source_table)
        target = scan_all(target_client, target_table)
        ignored = set(options.get("ignoreAttributes") or [])
        differing = sorted(
            k for k in source.keys() | target.keys() if _stripped(source, k, ignored) != _stripped(target, k, ignored)
        )
        in_flight: list[str] = []
        if differing:
            time.sleep(float(options.get("recheckDelaySeconds", 1)))
            for k in differing:
                key = _key(k)
                again = [
                    c.get_item(TableName=t, Key=_client_key(key), ConsistentRead=True).get("Item")
                    for c, t in ((source_client, source_table), (target_client, target_table))
                ]
                for items, item in zip((source, target), again, strict=True):
                    if item is None:
                        items.pop(k, None)
                    else:
                        items[k] = item
                if _stripped(source, k, ignored) == _stripped(target, k, ignored):
                    in_flight.append(k)
        settled = set(in_flight)
        missing = [k for k in differing if k not in settled and k in source and k not in target]
        extra = [k for k in differing if k not in settled and k in target and k not in source]
        different = [k for k in differing if k not in settled and k in source and k in target]
        sample_size = int(options.get("sampleSize", 10))
        finished = int(time.time() * 1000)
        return {
            "verifyId": options.get("verifyId") or event["verifyId"],
            "startedAt": started,
            "finishedAt": finished,
            "seconds": round((finished - started) / 1000, 3),
            "compared": len(source.keys() | target.keys()),
            "equal": len(source.keys() | target.keys()) - len(differing),
            "missing": len(missing),
            "extra": len(extra),
            "different": len(different),
            "inFlight": len(in_flight),
            "repaired": 0,
            "clean": not (missing or extra or different),
            "samples": {
                "missing": [_key(k) for k in missing[:sample_size]],
                "extra": [_key(k) for k in extra[:sample_size]],
                "different": [_key(k) for k in different[:sample_size]],
                "inFlight": [_key(k) for k in in_flight[:sample_size]],
            },
            "report": f"s3://stand-in/verify/{options.get('verifyId') or event['verifyId']}.jsonl",
        }


def _stripped(items: dict[str, dict[str, Any]], key: str, ignored: set[str]) -> dict[str, Any] | None:
    item = items.get(key)
    return None if item is None else {k: v for k, v in item.items() if k not in ignored}


def _client_key(key: dict[str, Any]) -> dict[str, Any]:
    """A Lambda-JSON key (binary as base64) in the client's form (bytes)."""
    return {name: ({"B": base64.b64decode(v["B"])} if "B" in v else v) for name, v in key.items()}


def _key(canonical: str) -> dict[str, Any]:
    """A canonical key (scan_all's) back as a Lambda-JSON key object."""
    return dict(json.loads(canonical))


def deploy_verify_standin(tables: Tables, *, lambda_client: Any | None = None) -> str:
    """The stand-in function behind the Lambda bridge and its one-task state machine; returns the machine's ARN."""
    name = f"verify-standin-{uuid.uuid4().hex[:6]}"
    arn = BRIDGE.deploy(name, {}, lambda_client=lambda_client, factory=lambda: StandInVerify(name, tables))
    definition = {
        "Comment": "Stand-in for statemachine/verify.asl.json (the verify workflow's contract), harness only.",
        "StartAt": "Compare the tables",
        "States": {
            "Compare the tables": {
                "Type": "Task",
                "Resource": arn,
                "Parameters": {"input.$": "$", "verifyId.$": "$$.Execution.Name"},
                "End": True,
            }
        },
    }
    role = "arn:aws:iam::123456789012:role/ddb-bridge-local-states"
    sfn = boto3.client("stepfunctions")
    return str(sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=role)["stateMachineArn"])
