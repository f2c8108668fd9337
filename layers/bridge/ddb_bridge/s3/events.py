"""Bucket events as they arrive through SQS: S3 notifications, EventBridge events, test events, split-copy tasks.

Keys arrive URL-encoded (`+` is a space, UTF-8 percent-encoded); the `sequencer` orders events of one key
(hex of varying length: left-pad the shorter with zeros, then compare as strings).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from ..core.errors import PermanentError

CREATED = "created"
REMOVED = "removed"
MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class ObjectEvent:
    """One object-level change: the hint that a key must be brought in line with the source."""

    bucket: str
    key: str  # decoded
    kind: str  # CREATED or REMOVED
    sequencer: str  # "" when the event carries none
    event_ms: int  # when S3 says it happened (0 when unknown)
    name: str  # e.g. ObjectCreated:Put, ObjectRemoved:DeleteMarkerCreated
    version_id: str | None = None


@dataclass(frozen=True)
class PartsTask:
    """A slice of a split copy: copy parts [first, last] of one multipart upload (see copy.MultipartJob)."""

    job: dict[str, Any]
    first: int
    last: int


def sequencer_key(sequencer: str) -> str:
    """The sequencer in a form that compares correctly as a string: lower case, left-padded to 64 hex digits."""
    value = sequencer.strip().lower()
    if len(value) > 64 or any(c not in "0123456789abcdef" for c in value):
        raise PermanentError("BadSequencer", f"sequencer {sequencer[:80]!r} is not a hex string of at most 64 digits")
    return value.rjust(64, "0")


def newer(a: str, b: str) -> bool:
    """True when sequencer `a` is later than `b` (AWS: left-pad the shorter with zeros, compare as strings)."""
    return sequencer_key(a) > sequencer_key(b)


def decode_key(raw: Any) -> str:
    """An event's key, URL-decoded (`+` is a space, %XX is UTF-8); PermanentError when it cannot be a key."""
    if not isinstance(raw, str) or raw == "":
        raise PermanentError("BadKey", f"object key {raw!r} is not a non-empty string")
    try:
        key = unquote_plus(raw, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise PermanentError("BadKey", f"object key {raw[:200]!r} is not percent-encoded UTF-8") from exc
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise PermanentError("KeyTooLong", f"object key of {len(key.encode('utf-8'))} bytes exceeds 1024")
    return key


def _ms(value: Any) -> int:
    if not isinstance(value, str) or not value:
        return 0
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return 0


def _kind(name: str) -> str | None:
    if name.startswith(("ObjectCreated", "s3:ObjectCreated")):
        return CREATED
    if name.startswith(("ObjectRemoved", "s3:ObjectRemoved", "LifecycleExpiration", "s3:LifecycleExpiration")):
        return REMOVED
    return None


def _from_notification(record: dict[str, Any]) -> ObjectEvent | None:
    name = str(record.get("eventName") or "")
    kind = _kind(name)
    if kind is None:
        return None  # tagging, ACL, restore...: no content change
    s3 = record.get("s3")
    if not isinstance(s3, dict) or not isinstance(s3.get("object"), dict) or not isinstance(s3.get("bucket"), dict):
        raise PermanentError("MalformedEvent", "an S3 notification record without s3.bucket and s3.object")
    obj = s3["object"]
    return ObjectEvent(
        bucket=str(s3["bucket"].get("name") or ""),
        key=decode_key(obj.get("key")),
        kind=kind,
        sequencer=str(obj.get("sequencer") or ""),
        event_ms=_ms(record.get("eventTime")),
        name=name.removeprefix("s3:"),
        version_id=obj.get("versionId") or None,
    )


def _from_eventbridge(event: dict[str, Any], *, keys_encoded: bool) -> ObjectEvent | None:
    detail_type = event.get("detail-type")
    kind = {"Object Created": CREATED, "Object Deleted": REMOVED}.get(str(detail_type))
    if kind is None:
        return None
    detail = event.get("detail")
    if not isinstance(detail, dict) or not isinstance(detail.get("object"), dict):
        raise PermanentError("MalformedEvent", "an EventBridge S3 event without detail.object")
    obj = detail["object"]
    raw = obj.get("key")
    key = decode_key(raw) if keys_encoded else raw
    if not isinstance(key, str) or not key:
        raise PermanentError("BadKey", f"object key {raw!r} is not a non-empty string")
    reason = str(detail.get("reason") or "")
    if kind == REMOVED and detail.get("deletion-type") == "Delete Marker Created":
        reason = "DeleteMarkerCreated"
    return ObjectEvent(
        bucket=str((detail.get("bucket") or {}).get("name") or ""),
        key=key,
        kind=kind,
        sequencer=str(obj.get("sequencer") or ""),
        event_ms=_ms(event.get("time")),
        name=f"{detail_type}:{reason}" if reason else str(detail_type),
        version_id=obj.get("version-id") or None,
    )


def parse_body(body: str, *, eventbridge_keys_encoded: bool = True) -> list[ObjectEvent | PartsTask]:
    """What one SQS message asks for; [] for a test event or an event that changes no content.

    PermanentError when the message is not one of the shapes we accept (it is parked whole).
    """
    try:
        message = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise PermanentError("MalformedMessage", f"message body is not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise PermanentError("MalformedMessage", "message body is not a JSON object")
    if message.get("Event") == "s3:TestEvent":
        return []
    if "ddbBridgeParts" in message:
        task = message["ddbBridgeParts"]
        if not isinstance(task, dict) or not isinstance(task.get("job"), dict):
            raise PermanentError("MalformedMessage", "a parts task without its job")
        return [PartsTask(task["job"], int(task["first"]), int(task["last"]))]
    if message.get("source") == "aws.s3" and "detail-type" in message:
        event = _from_eventbridge(message, keys_encoded=eventbridge_keys_encoded)
        return [event] if event else []
    records = message.get("Records")
    if isinstance(records, list):
        out: list[ObjectEvent | PartsTask] = []
        for record in records:
            if not isinstance(record, dict):
                raise PermanentError("MalformedEvent", "a notification record that is not an object")
            event = _from_notification(record)
            if event is not None:
                out.append(event)
        return out
    raise PermanentError("UnknownMessage", "neither an S3 notification, an EventBridge S3 event nor a test event")
