"""Every events/s3_sqs_*.json through bucket_replicator, as `sam local invoke -e` would, against an oracle."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest

from harness.s3_world import bucket_world

EVENTS = sorted((Path(__file__).resolve().parents[2] / "events").glob("s3_sqs_*.json"))


def test_there_are_sample_events() -> None:
    assert [p.name for p in EVENTS] == ["s3_sqs_eventbridge_and_malformed.json", "s3_sqs_notifications.json"]


def _object_of(body: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, decoded key) of a message, written independently of the layer's parser; None when not an object event."""
    if body.get("source") == "aws.s3":
        kind = {"Object Created": "created", "Object Deleted": "removed"}[body["detail-type"]]
        return kind, unquote_plus(body["detail"]["object"]["key"])
    records = body.get("Records") or []
    if records and "s3" in records[0]:
        return ("created" if "Created" in records[0]["eventName"] else "removed"), unquote_plus(
            records[0]["s3"]["object"]["key"]
        )
    return None


@pytest.mark.parametrize("path", EVENTS, ids=lambda p: p.stem)
def test_bucket_replicator_with_every_sample_event(aws: Any, path: Path) -> None:
    # GIVEN the event's bucket, with the objects its created-events name (and target copies of the removed ones)
    world = bucket_world(notify=False)
    event = json.loads(path.read_text().replace("media-src", world.source_bucket))
    expected: dict[str, bytes] = {}
    malformed = 0
    for record in event["Records"]:
        body = json.loads(record["body"])
        if body.get("Event") == "s3:TestEvent":
            continue
        found = None
        with contextlib.suppress(KeyError):
            found = _object_of(body)
        if found is None:
            malformed += 1
        elif found[0] == "created":
            world.put(found[1], b"sample " + found[1].encode())
            expected[found[1]] = b"sample " + found[1].encode()
        else:
            world.target.put_object(Bucket=world.target_bucket, Key=found[1], Body=b"stale copy")
    # WHEN the replicator gets the event as Lambda delivers it
    response = world.replicator().invoke(event)
    # THEN the target holds exactly the source objects, malformed messages are parked, nothing is retried
    assert response == {"batchItemFailures": []}
    assert world.target_contents() == expected
    assert len(world.parked()) == malformed
