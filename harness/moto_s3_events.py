"""Makes moto 5.2.5's bucket notifications carry what S3's do: a per-key `sequencer`, `versionId`, delete markers.

moto emits notifications to SQS with correctly URL-encoded keys but (1) no `sequencer`, (2) no `versionId`,
and (3) no event at all when a versioned bucket gets a delete marker or loses one of several versions.
The patch stamps, when moto emits the event (inside the request, so in the order S3 applied the writes),
an increasing per-key hex sequencer of varying length (no leading zeros, as AWS's vary), so a test can
then shuffle delivery and the replicator must order by the padded comparison; and it emits the missing
ObjectRemoved events. Idempotent; in-process moto only.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.s3 import models as s3_models
from moto.s3 import notifications

_LOCK = threading.Lock()
_COUNTERS: dict[tuple[str, str], int] = {}
_STEP = 0x1F  # crosses hex-length boundaries within a few events per key (0x1f, 0x3e, ... 0x100...)
_MARK = "_ddb_bridge_s3_events"
_emitting = threading.local()


def next_sequencer(bucket: str, key: str) -> str:
    """The key's next sequencer: hex, growing, no padding (length changes: 1f, 3e, ..., 1f0, ...)."""
    with _LOCK:
        value = _COUNTERS.get((bucket, key), 0) + _STEP
        _COUNTERS[(bucket, key)] = value
    return format(value, "x")


def _stamped(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def build(event_name: str, bucket: Any, key: Any, notification_id: str) -> Any:
        body = original(event_name, bucket, key, notification_id)
        obj = body["Records"][0]["s3"]["object"]
        obj["sequencer"] = getattr(_emitting, "sequencer", None) or next_sequencer(bucket.name, key.name)
        version = getattr(key, "version_id", None)
        if version and str(version) != "null":
            obj["versionId"] = str(version)
        return body

    setattr(build, _MARK, True)
    return build


def _counted_send(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def send(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        _emitting.sent = True
        # one sequencer per write, whichever destinations it goes to
        _emitting.sequencer = next_sequencer(bucket.name, key.name) if key is not None else None
        try:
            original(account_id, event_name, bucket, key)
        finally:
            _emitting.sequencer = None

    return send


class _Marker:
    """What a delete-marker event reports: the key, size 0, no ETag, the marker's version."""

    def __init__(self, name: str, version_id: str | None) -> None:
        self.name = name
        self.size = 0
        self.etag = ""
        self.version_id = version_id


def _delete_with_events(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def delete_object(
        self: Any, bucket_name: str, key_name: str, version_id: str | None = None, bypass: bool = False
    ) -> Any:
        _emitting.sent = False
        found, meta = original(self, bucket_name, key_name, version_id=version_id, bypass=bypass)
        bucket = self.get_bucket(bucket_name)
        if found and bucket.is_versioned and not _emitting.sent:
            if version_id is None:
                name = "s3:ObjectRemoved:DeleteMarkerCreated"
            else:
                name = notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_EVENT
            notifications.send_event(self.account_id, name, bucket, _Marker(key_name, meta.get("version-id")))
        return found, meta

    return delete_object


def install() -> None:
    """Patch moto's S3 notifications (once per process)."""
    if getattr(notifications._get_s3_event, _MARK, False):
        return
    notifications._get_s3_event = _stamped(notifications._get_s3_event)  # type: ignore[assignment]
    notifications.send_event = _counted_send(notifications.send_event)  # type: ignore[assignment]
    s3_models.S3Backend.delete_object = _delete_with_events(s3_models.S3Backend.delete_object)  # type: ignore[method-assign]
