"""Sample events in events/: loading them and the table schema they imply."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from .lambdas import ROOT

EVENTS = ROOT / "events"


def load(path: str | Path) -> dict[str, Any]:
    """One event file."""
    return dict(json.loads(Path(path).read_text()))


def stream_events() -> list[Path]:
    """Every DynamoDB-stream-shaped sample event (what table_replicator and stream_relay consume)."""
    return sorted(EVENTS.glob("ddb_stream_*.json"))


def key_schema_of(event: dict[str, Any]) -> list[tuple[str, str]]:
    """The key schema of a stream event's table: the first record with Keys, hash attribute first."""
    for record in event["Records"]:
        keys = record.get("dynamodb", {}).get("Keys")
        if keys:
            return [(name, next(iter(value))) for name, value in keys.items()]
    raise ValueError("no record in the event has Keys")


def oracle_value(value: dict[str, Any]) -> dict[str, Any]:
    """Lambda JSON to client form, written apart from the layer's codec so tests can check it against it."""
    ((tag, inner),) = value.items()
    if tag == "B":
        return {"B": base64.b64decode(inner)}
    if tag == "BS":
        return {"BS": [base64.b64decode(v) for v in inner]}
    if tag == "M":
        return {"M": {k: oracle_value(v) for k, v in inner.items()}}
    if tag == "L":
        return {"L": [oracle_value(v) for v in inner]}
    return {tag: inner}
