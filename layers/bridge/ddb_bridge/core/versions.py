"""Item versions: stamps in every form writers use, the bridge's own versions, one total order, conditions.

A version is `(rank, ts, origin, seq)`, compared in that order. With application stamps (`StampMode`
application) `ts` comes from the item's stamp, `seq` is 0 and `rank` 1; a write that carries no stamp
gets a version from the bridge with rank 0, below every stamp. With bridge-owned stamps (`StampMode`
bridge) every version is the bridge's: `ts` the stream record's creation second (in microseconds,
raised by the causal rule of `bridge_version`), `seq` its stream sequence number, `rank` 1
(docs/bidirectional.md#versions).

Writers stamp in different forms: integer milliseconds, seconds with a fraction (`Decimal(time.time())`,
the public China <-> Global sample's load generator), or the same as numeric text in an `S` attribute.
`stamp_micros` turns every form into integer microseconds, the one order both regions compute the same
way (docs/design.md#version-stamps). A condition inside DynamoDB compares the *raw* stored value, so
the conditions built here are a fast path that passes only where the raw order is the normalised
order; when one fails, the stored item comes back (`ReturnValuesOnConditionCheckFailure=ALL_OLD`),
the decision is taken here on normalised versions (`wins`), and the write is retried guarded by an
exact match on the raw stamp it read (`unchanged`). No write ever carries a condition that the
item's current state makes impossible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from .codec import Image
from .settings import VersionAttrs

SECONDS_BELOW = 10**11  # a stamp below this is seconds (10^11 s is the year 5138), at or above it milliseconds
STAMP_LIMIT = 10**18  # a stamp at or above this is not a time in any unit: unreadable
_STAMP_TEXT = re.compile(r"[+]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,4})?")
_STAMP_TEXT_MAX = 64


MAX_SEQ = 10**40  # a DynamoDB stream sequence number has at most 40 digits


class Version(NamedTuple):
    """A change's version, ordered (rank, ts, origin, seq): the origin breaks a tie on ts, seq one in a region."""

    ts: int
    origin: str
    seq: int = 0
    rank: int = 1

    def order(self) -> tuple[int, int, str, int]:
        """The sort key: rank first (an unstamped write's bridge version is below every stamp), then ts, origin, seq."""
        return (self.rank, self.ts, self.origin, self.seq)

    def __lt__(self, other: object) -> bool:
        return self.order() < _order_of(other)

    def __le__(self, other: object) -> bool:
        return self.order() <= _order_of(other)

    def __gt__(self, other: object) -> bool:
        return self.order() > _order_of(other)

    def __ge__(self, other: object) -> bool:
        return self.order() >= _order_of(other)


def _order_of(other: object) -> tuple[int, int, str, int]:
    order = getattr(other, "order", None)  # duck-typed: each function of the local harness has its own copy
    if not callable(order):
        raise TypeError(f"a Version compares with a Version, not {type(other).__name__}")
    return tuple(order())


def _scaled_floor(number: Decimal, places: int) -> int:
    """floor(number * 10**places) for a non-negative number, in exact integer arithmetic (no rounding context)."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    coefficient = int("".join(map(str, digits)) or "0")
    shift = exponent + places
    return coefficient * 10**shift if shift >= 0 else coefficient // 10**-shift


def stamp_micros(value: Any) -> int | None:
    """A stamp attribute value in microseconds since the epoch; None when it cannot be read (unstamped).

    Accepted: `{"N": text}` or `{"S": text}` whose text is a non-negative decimal number below 10^18.
    Below 10^11 it is seconds, else milliseconds; digits finer than a microsecond are dropped (floor).
    """
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((tag, text),) = value.items()
    if tag not in ("N", "S") or not isinstance(text, str) or len(text) > _STAMP_TEXT_MAX:
        return None
    if not _STAMP_TEXT.fullmatch(text):
        return None
    number = Decimal(text)
    if number >= STAMP_LIMIT:
        return None
    return _scaled_floor(number, 6 if number < SECONDS_BELOW else 3)


def version_of(image: Image | None, attrs: VersionAttrs) -> Version | None:
    """The version stamped on an image (either form), or None for an unstamped item (older than any version)."""
    if not image:
        return None
    ts = stamp_micros(image.get(attrs.ts))
    if ts is None:
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


def wins(change: Version | None, stored: Version | None) -> bool:
    """Whether a change replaces what is stored: a newer version; an unstamped change only an unstamped item."""
    if change is None:
        return stored is None
    return is_newer(change, stored)


@dataclass(frozen=True)
class Condition:
    """A DynamoDB ConditionExpression with its names and values."""

    expression: str
    names: dict[str, str]
    values: dict[str, Any]

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments for PutItem / DeleteItem / a transaction element."""
        out: dict[str, Any] = {"ConditionExpression": self.expression}
        if self.names:
            out["ExpressionAttributeNames"] = self.names
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


def _decimal_text(micros: int, places: int) -> str:
    """`micros / 10**places` written exactly (e.g. 1796180270866811 µs, 6 -> "1796180270.866811")."""
    whole, part = divmod(micros, 10**places)
    return f"{whole}.{part:0{places}d}" if part else str(whole)


def beats_stored(version: Version | None, attrs: VersionAttrs) -> Condition:
    """Fast-path condition on a table: passes only where code agrees the change wins (`wins`).

    It passes when the item is absent or has no timestamp attribute, or holds a number strictly older
    in its own unit: below the change's time in seconds (a seconds-form stamp), or between 10^11 and
    the change's time in milliseconds (a milliseconds-form stamp). Both bounds lie on the microsecond
    grid, so a raw value below them is older after normalising too. Anything else (a tie, a stamp in
    an `S` attribute, an unreadable stamp) fails the fast path and is decided in code.
    """
    if version is None:  # an unstamped change only beats an item without a timestamp
        return Condition("attribute_not_exists(#ts)", {"#ts": attrs.ts}, {})
    seconds = _decimal_text(version.ts, 6) if version.ts < SECONDS_BELOW * 10**6 else str(SECONDS_BELOW)
    values = {
        ":sec": {"N": seconds},
        ":msmin": {"N": str(SECONDS_BELOW)},
        ":ms": {"N": _decimal_text(version.ts, 3)},
    }
    expression = "attribute_not_exists(#ts) OR #ts < :sec OR (#ts >= :msmin AND #ts < :ms)"
    return Condition(expression, {"#ts": attrs.ts}, values)


def unchanged(stored: Image | None, attrs: VersionAttrs) -> Condition:
    """Guard: the stamp attributes still hold exactly the raw values read (an absent one is still absent).

    `stored` is the item as DynamoDB returned it (client form). The condition holds for the state that
    was read, whatever its form, so it is always satisfiable; it fails only if the item changed since.
    """
    parts: list[str] = []
    values: dict[str, Any] = {}
    for placeholder, name in (("ts", attrs.ts), ("o", attrs.origin)):
        raw = (stored or {}).get(name)
        if raw is None:
            parts.append(f"attribute_not_exists(#{placeholder})")
        else:
            parts.append(f"#{placeholder} = :{placeholder}")
            values[f":{placeholder}"] = raw
    return Condition(" AND ".join(parts), {"#ts": attrs.ts, "#o": attrs.origin}, values)


def older_than(version: Version | None, attrs: VersionAttrs) -> Condition:
    """Condition on a bridge-written table (tombstones), whose `ts` is always integer microseconds.

    There raw order is normalised order, so the tuple comparison runs inside DynamoDB as it is: an
    absent record is older than any version; equal versions do not pass (a duplicate is a no-op).
    """
    names = {"#ts": attrs.ts, "#o": attrs.origin}
    if version is None:
        return Condition("attribute_not_exists(#ts)", {"#ts": attrs.ts}, {})
    values = {":ts": {"N": str(version.ts)}, ":o": {"S": version.origin}}
    expression = "attribute_not_exists(#ts) OR #ts < :ts OR (#ts = :ts AND (attribute_not_exists(#o) OR #o < :o))"
    return Condition(expression, names, values)


def recorded_version(item: Image | None, attrs: VersionAttrs) -> Version | None:
    """A version the bridge wrote itself (tombstones): `ts` is integer microseconds as written."""
    if not item:
        return None
    ts_value = item.get(attrs.ts)
    text = ts_value.get("N") if isinstance(ts_value, dict) else None
    if not isinstance(text, str) or not text.isdigit():
        return None
    origin_value = item.get(attrs.origin)
    origin = origin_value.get("S", "") if isinstance(origin_value, dict) else ""
    return Version(int(text), origin if isinstance(origin, str) else "")


def rank(version: Version | None) -> tuple[int, int, int, str, int]:
    """Last-writer-wins sort key, with an unversioned change (None) below every version."""
    return (0, 0, 0, "", 0) if version is None else (1, *version.order())


def bridge_version(stream_us: int, seq: int, region: str, newest: Version | None, *, rank: int = 1) -> Version:
    """The bridge's version of a local change: its stream time and sequence number, after everything it follows.

    `stream_us` is the stream record's ApproximateCreationDateTime (whole seconds on DynamoDB Streams) in
    microseconds, `seq` its SequenceNumber, `newest` the newest version this region's bridge had recorded
    for the item when the change was versioned. The causal rule: `ts = max(stream time, newest.ts)`, plus
    one microsecond when `newest` comes from a region whose tag sorts above this one's (it would win the
    tie otherwise). So a write made on top of a state beats that state, whatever second both fell in; two
    writes neither region saw before writing are ordered by second, then by the regions' tags.
    """
    ts = stream_us
    if newest is not None and newest.rank == rank:
        ts = max(ts, newest.ts + (1 if newest.origin > region else 0))
    return Version(ts, region, seq, rank)


def encode_version(version: Version) -> str:
    """A version as one string (side table, the bridge's item attribute): `rank.ts.seq.origin`."""
    return f"{version.rank}.{version.ts}.{version.seq}.{version.origin}"


_ENCODED = re.compile(r"^([01])\.(\d{1,22})\.(\d{1,40})\.([A-Za-z0-9_.:-]{0,64})$")


def decode_version(text: Any) -> Version | None:
    """The version `encode_version` wrote; None for anything else (never raises)."""
    if not isinstance(text, str):
        return None
    match = _ENCODED.match(text)
    if match is None:
        return None
    rank_text, ts, seq, origin = match.groups()
    return Version(int(ts), origin, int(seq), int(rank_text))


def sequence_number(text: Any) -> int:
    """A stream record's SequenceNumber as an integer (orders one item's records); ValueError if it is not one."""
    if not isinstance(text, str) or not text.isdigit() or len(text) > 40:
        raise ValueError("SequenceNumber must be a decimal number of at most 40 digits")
    return int(text)


def micros_of_ms(ms: int) -> int:
    """Milliseconds (stream times) in the versions' unit."""
    return ms * 1000
