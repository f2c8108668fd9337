"""One replicable change, parsed from a DynamoDB stream record as Lambda delivers it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from . import validate
from .codec import Image, MalformedImage, decode_image
from .errors import PermanentError
from .keys import key_id
from .settings import VersionAttrs
from .versions import Version, is_newer, micros_of_ms, version_of


class Op(StrEnum):
    """What a change does to its item."""

    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Change:
    """A put or delete of one item, with its version and the raw record it came from."""

    key_id: str
    key: Image
    op: Op
    item: Image | None
    version: Version | None
    seq: str
    approx_ms: int
    is_ttl: bool
    record: dict[str, Any]


def _epoch_ms(value: Any) -> int:
    # Lambda gives epoch seconds (a number); the local harness keeps the fraction.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 10**11:
        raise MalformedImage("ApproximateCreationDateTime must be epoch seconds")
    return int(value * 1000)


def delete_version(old: Image | None, approx_ms: int, attrs: VersionAttrs, origin: str | None) -> Version:
    """The version of a delete: newer than the item it removed, and no older than the delete itself.

    `origin` is the region where the delete happened (bidirectional); one-way keeps the item's origin.
    """
    previous = version_of(old, attrs)
    when = micros_of_ms(approx_ms)
    ts = max(when, previous.ts + 1) if previous else when
    return Version(ts, origin if origin is not None else (previous.origin if previous else ""))


def from_stream_record(record: dict[str, Any], attrs: VersionAttrs, *, origin: str | None = None) -> Change:
    """Parse one Lambda DynamoDB stream record; anything unusable raises PermanentError (park it)."""
    try:
        event_name = record["eventName"]
        body = record["dynamodb"]
        wire_keys = body["Keys"]
        seq = str(body["SequenceNumber"])
        approx_ms = _epoch_ms(body.get("ApproximateCreationDateTime", 0))
        validate.key(wire_keys)
        identity = key_id(wire_keys)
        key = decode_image(wire_keys)
        old = validate.image(body["OldImage"], wire_keys) if "OldImage" in body else None
        if event_name in ("INSERT", "MODIFY"):
            if "NewImage" not in body:
                raise MalformedImage(
                    "INSERT/MODIFY without NewImage: the stream must use NEW_IMAGE or NEW_AND_OLD_IMAGES"
                )
            item = validate.image(body["NewImage"], wire_keys)
            return Change(identity, key, Op.PUT, item, version_of(item, attrs), seq, approx_ms, False, record)
        if event_name == "REMOVE":
            identity_type = (record.get("userIdentity") or {}).get("type")
            return Change(
                identity,
                key,
                Op.DELETE,
                None,
                delete_version(old, approx_ms, attrs, origin),
                seq,
                approx_ms,
                identity_type == "Service",
                record,
            )
        raise MalformedImage("unknown eventName (expected INSERT, MODIFY or REMOVE)")
    except validate.InvalidValue as exc:
        raise PermanentError(exc.reason, f"DynamoDB would refuse it: {exc}") from exc
    except (KeyError, TypeError, ValueError, AttributeError, MalformedImage) as exc:
        detail = (
            f"missing field {exc}"
            if isinstance(exc, KeyError)
            else str(exc)
            if isinstance(exc, MalformedImage)
            else type(exc).__name__
        )
        raise PermanentError("MalformedRecord", f"malformed stream record: {detail}") from exc


def coalesce(changes: list[Change], *, by_version: bool = False) -> tuple[dict[str, Change], int]:
    """One change per key, and how many changes it made redundant.

    In stream order the last change wins. `by_version` (last-writer-wins) keeps the change with the
    highest version instead, since delivery order means nothing there (an unversioned one is oldest).
    """
    kept: dict[str, Change] = {}
    for change in changes:
        current = kept.get(change.key_id)
        if current is None or not by_version or not is_newer(current.version, change.version):
            kept[change.key_id] = change
    return kept, len(changes) - len(kept)
