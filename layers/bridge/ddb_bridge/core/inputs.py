"""Execution inputs of the workflows: checked field by field, every error naming the field and what it expects."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from .observability import MetricUnit, metrics

RUN_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


class InvalidInput(ValueError):
    """The execution input is wrong; the message says which field and what it expects."""


def refused(exc: InvalidInput, metric: str) -> dict[str, Any]:
    """A plan step's answer to bad input: not valid, with the message for the console; counted as `metric`."""
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
    return {"valid": False, "message": f"Invalid input: {exc}. Fix it and start a new execution."}


@dataclass(frozen=True)
class IntField:
    """A whole-number field: its range, its default (None: decided later) and what it means."""

    minimum: int
    maximum: int
    default: int | None
    meaning: str


def input_object(raw: Any, allowed: Collection[str]) -> dict[str, Any]:
    """The input as an object (None is {}), refusing fields it does not know, with a did-you-mean hint."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise InvalidInput(f"the execution input must be a JSON object, got {type(raw).__name__}")
    for name in raw:
        if name not in allowed:
            close = difflib.get_close_matches(name, list(allowed), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise InvalidInput(f"unknown field {name!r}{hint}; allowed: {', '.join(allowed)}")
    return raw


def whole_number(name: str, value: Any, spec: IntField) -> int:
    """A whole number within the field's range (numeric strings are accepted)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().lstrip("-").isdigit():
        raise InvalidInput(
            f"{name} must be a whole number from {spec.minimum} to {spec.maximum} ({spec.meaning}), got {value!r}"
        )
    number = int(value)
    if not spec.minimum <= number <= spec.maximum:
        raise InvalidInput(f"{name} must be from {spec.minimum} to {spec.maximum} ({spec.meaning}), got {number}")
    return number


def whole_numbers(raw: Mapping[str, Any], specs: Mapping[str, IntField]) -> dict[str, int | None]:
    """Every whole-number field, its default where absent or null."""
    return {
        name: whole_number(name, raw[name], spec) if raw.get(name) is not None else spec.default
        for name, spec in specs.items()
    }


def flag(raw: Mapping[str, Any], name: str, default: bool) -> bool:
    """A true/false field (JSON booleans only)."""
    value = raw.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false, got {value!r}")
    return value


def run_id(raw: Mapping[str, Any], name: str, execution: str) -> str:
    """A run's id (names its checkpoints): the field, else the execution's name."""
    value = str(raw.get(name) or execution)
    if not RUN_ID_RE.match(value):
        raise InvalidInput(f"{name} must be 1-80 of A-Z a-z 0-9 _ . - (it names the checkpoints), got {value!r}")
    return value
