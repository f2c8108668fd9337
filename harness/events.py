"""Sample events in events/: loading them and the table schema they imply."""

from __future__ import annotations

import base64
import json
from decimal import Decimal, InvalidOperation
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
    """Lambda JSON to client form, written apart from the layer's codec so tests can check it against it.

    Raises ValueError for what DynamoDB refuses in the sample events (the oracle's own reading of its
    documented rules): wrong JSON types, bad numbers or base64, empty or duplicate sets, unknown tags.
    """
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError("not one type tag")
    ((tag, inner),) = value.items()
    if tag == "B":
        return {"B": base64.b64decode(inner, validate=True)}
    if tag == "BS":
        decoded = [base64.b64decode(v, validate=True) for v in inner]
        _a_set(decoded, decoded)
        return {"BS": decoded}
    if tag == "M":
        if not isinstance(inner, dict):
            raise ValueError("M is not an object")
        return {"M": {k: oracle_value(v) for k, v in inner.items()}}
    if tag == "L":
        if not isinstance(inner, list):
            raise ValueError("L is not a list")
        return {"L": [oracle_value(v) for v in inner]}
    if tag == "N":
        _number(inner)
    elif tag == "NS":
        _a_set(inner, [_number(v) for v in inner])
    elif tag == "S":
        if not isinstance(inner, str):
            raise ValueError("S is not text")
    elif tag == "SS":
        _a_set(inner, [v if isinstance(v, str) else _fail("SS element") for v in inner])
    elif tag == "BOOL":
        if not isinstance(inner, bool):
            raise ValueError("BOOL is not a boolean")
    elif tag == "NULL":
        if inner is not True:
            raise ValueError("NULL is not true")
    else:
        raise ValueError("unknown tag")
    return {tag: inner}


def _fail(what: str) -> Any:
    raise ValueError(what)


def _number(text: Any) -> Decimal:
    if not isinstance(text, str) or text.strip() != text:
        raise ValueError("a number is not text")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not number.is_finite():
        raise ValueError("not a finite number")
    digits = "".join(map(str, number.as_tuple().digits)).strip("0")
    if len(digits) > 38:
        raise ValueError("more than 38 digits")
    return number


def _a_set(raw: Any, elements: list[Any]) -> None:
    if not isinstance(raw, list) or not raw:
        raise ValueError("a set must be a non-empty list")
    if len(set(elements)) != len(elements):
        raise ValueError("duplicate set elements")
