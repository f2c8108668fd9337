"""Item versions `(ts, origin)` and last-writer-wins comparison with a deterministic tie-break."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from .codec import Image
from .settings import VersionAttrs


class Version(NamedTuple):
    """A change's version: milliseconds since epoch, then the origin region tag as the tie-break."""

    ts: int
    origin: str


def version_of(image: Image | None, attrs: VersionAttrs) -> Version | None:
    """The version stamped on an image, or None for an unversioned item (older than any version).

    A malformed stamp (not a number, a float) counts as unversioned rather than crashing.
    """
    if not image:
        return None
    ts_value = image.get(attrs.ts)
    if not isinstance(ts_value, dict) or "N" not in ts_value:
        return None
    try:
        ts = int(ts_value["N"])
    except (TypeError, ValueError):
        return None
    origin_value = image.get(attrs.origin)
    origin = origin_value.get("S", "") if isinstance(origin_value, dict) else ""
    return Version(ts, origin if isinstance(origin, str) else "")


def is_newer(candidate: Version | None, current: Version | None) -> bool:
    """True iff `candidate` strictly beats `current`; an unversioned item is older than any version."""
    if candidate is None:
        return False
    if current is None:
        return True
    return candidate > current


@dataclass(frozen=True)
class Condition:
    """A DynamoDB ConditionExpression with its names and values."""

    expression: str
    names: dict[str, str]
    values: dict[str, Any]

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments for PutItem / DeleteItem / a transaction element."""
        out: dict[str, Any] = {"ConditionExpression": self.expression, "ExpressionAttributeNames": self.names}
        if self.values:
            out["ExpressionAttributeValues"] = self.values
        return out

    def both(self, other: Condition) -> Condition:
        """Both conditions at once (their placeholders must not clash)."""
        clash = (set(self.names) & set(other.names)) | (set(self.values) & set(other.values))
        if clash:
            raise ValueError(f"placeholders used by both conditions: {sorted(clash)}")
        return Condition(
            f"({self.expression}) AND ({other.expression})",
            {**self.names, **other.names},
            {**self.values, **other.values},
        )


def older_than(version: Version | None, attrs: VersionAttrs) -> Condition:
    """Condition: the stored item (if any) is strictly older than `version`.

    Evaluated inside DynamoDB, so no read-then-write race. An absent item, or one without a
    timestamp, is older than any version. Equal versions do not pass: a duplicate is a no-op.
    """
    names = {"#ts": attrs.ts, "#o": attrs.origin}
    if version is None:
        # An unversioned change only beats an unversioned item.
        return Condition("attribute_not_exists(#ts)", {"#ts": attrs.ts}, {})
    values = {":ts": {"N": str(version.ts)}, ":o": {"S": version.origin}}
    expression = "attribute_not_exists(#ts) OR #ts < :ts OR (#ts = :ts AND (attribute_not_exists(#o) OR #o < :o))"
    return Condition(expression, names, values)


def same_version(version: Version | None, attrs: VersionAttrs) -> Condition:
    """Condition: the stored item still has exactly this version (unstamped: still no timestamp)."""
    if version is None:
        return Condition("attribute_not_exists(#ts)", {"#ts": attrs.ts}, {})
    if not version.origin:
        return Condition("#ts = :ts", {"#ts": attrs.ts}, {":ts": {"N": str(version.ts)}})
    return Condition(
        "#ts = :ts AND #o = :o",
        {"#ts": attrs.ts, "#o": attrs.origin},
        {":ts": {"N": str(version.ts)}, ":o": {"S": version.origin}},
    )


def rank(version: Version | None) -> tuple[int, int, str]:
    """Last-writer-wins sort key, with an unversioned change (None) below every version."""
    return (0, 0, "") if version is None else (1, version.ts, version.origin)
