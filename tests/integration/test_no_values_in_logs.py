"""No attribute value ever reaches a log line or an error text, whatever happens to the record.

Items carry values marked SECRET (text, numbers, binary, nested, in malformed values too); each
function runs with its logs at DEBUG through good records, malformed ones, refused writes, parked
records and a reverted local write. Every captured log line and every parked message's `error` text
is then scanned for the markers. (Parked messages keep the whole record: that is their point.)
With LOG_KEYS=hash, keys are hashed in logs too.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import boto3
import pytest

from ddb_bridge.core.access import TargetAccess
from ddb_bridge.core.parking import ParkingLot
from ddb_bridge.loads.backfill.clients import BackfillClients
from ddb_bridge.loads.backfill.copy import copy_segment
from ddb_bridge.loads.settings import BackfillSettings
from harness.bidirectional import TwoRegions
from harness.faults import Fault, inject
from harness.lambdas import LocalFunction
from harness.load_world import TableShape, load_world
from harness.streams import StreamPoller, sqs_on_failure
from harness.world import one_way_world

SECRET_TEXT = "SECRET-7c1f"
SECRET_NUMBER = "31415926535897932384626433"
SECRET_BYTES = b"SECRET-BIN-\x00\xff"
MARKERS = (SECRET_TEXT, SECRET_NUMBER, base64.b64encode(SECRET_BYTES).decode(), "SECRET-BIN")
KEY_MARKER = "KEYMARK-42"


def debug(service: str) -> dict[str, str]:
    """DEBUG logs under a service name of this test's own (a logger of an earlier test writes elsewhere)."""
    return {"POWERTOOLS_LOG_LEVEL": "DEBUG", "POWERTOOLS_SERVICE_NAME": f"{service}-{uuid.uuid4().hex[:6]}"}


def captured(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    """Every log line written: the JSON lines on stdout/stderr, and every record with all its fields."""
    out = capfd.readouterr()
    records = [json.dumps(vars(r), default=str, ensure_ascii=False) for r in caplog.records]
    return "\n".join([out.out, out.err, *records])


def secret_item(pk: str, ts: str | None = None, origin: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": pk},
        "card": {"S": SECRET_TEXT},
        "balance": {"N": SECRET_NUMBER},
        "blob": {"B": SECRET_BYTES},
        "nested": {"M": {"deep": {"L": [{"S": SECRET_TEXT}, {"N": SECRET_NUMBER}]}}},
    }
    if ts is not None:
        item["last_update_timestamp"] = {"N": ts}
    if origin is not None:
        item["last_updater_region"] = {"S": origin}
    return item


def wire_record(seq: int, pk: str, image: dict[str, Any]) -> dict[str, Any]:
    return {
        "eventID": f"ev{seq}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": time.time(),
            "Keys": {"pk": {"S": pk}},
            "NewImage": image,
            "SequenceNumber": str(seq),
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
    }


MALFORMED = [
    {"pk": {"S": "bad-number"}, "v": {"N": SECRET_TEXT}},
    {"pk": {"S": "bad-type"}, "v": {"S": int(SECRET_NUMBER)}},
    {"pk": {"S": "bad-base64"}, "v": {"M": {"x": {"B": SECRET_TEXT + "!"}}}},
    {"pk": {"S": "dup-set"}, "v": {"SS": [SECRET_TEXT, SECRET_TEXT]}},
    {"pk": {"S": "bad-tag"}, "v": {SECRET_TEXT: "1"}},
    {"pk": {"S": "big"}, "v": {"S": SECRET_TEXT * 40_000}},
]


def scan(text: str, *, keys: bool = False) -> list[str]:
    """Every marker found in `text` (and the key marker, when keys must not show either)."""
    found = [m for m in MARKERS if m in text]
    if keys and KEY_MARKER in text:
        found.append(KEY_MARKER)
    return found


def errors_of(messages: list[dict[str, Any]]) -> str:
    return "\n".join(m["error"] for m in messages)


def test_table_replicator_logs_no_values(
    aws: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env(REPLICATION_MODE="lww", **debug("replicator")))
    fn.invoke({"Records": []})
    client = fn.layer_module("ddb_bridge.core.clients").target_sessions.current().dynamodb
    # a target that refuses one item (its error quotes the value, as DynamoDB's do) and denies another
    quoting = "The parameter cannot be converted to a numeric value: " + SECRET_NUMBER
    refuse = Fault("ValidationException", times=10**9, when=lambda r: b"refused" in r.body, message=quoting)
    inject(client, "PutItem", refuse)
    inject(client, "PutItem", Fault("AccessDeniedException", times=10**9, when=lambda r: b"denied" in r.body))
    records = [wire_record(1, "ok", _wire(secret_item("ok", "1796180270.5", "us-east-1")))]
    records += [wire_record(2 + i, item["pk"]["S"], item) for i, item in enumerate(MALFORMED)]
    records += [wire_record(20, "refused", _wire(secret_item("refused", "1796180270.5", "us-east-1")))]
    records += [wire_record(21, "denied", _wire(secret_item("denied", "1796180270.5", "us-east-1")))]
    fn.invoke({"Records": records})
    parked = world.parked()
    assert len(parked) == len(MALFORMED) + 1  # the refused one too; the denied one is retried
    logs = captured(capfd, caplog)
    assert refuse.injected >= 1 and "record parked" in logs
    assert scan(logs) == [] and scan(errors_of(parked)) == []


def _wire(item: dict[str, Any]) -> dict[str, Any]:
    """Client form (bytes) to Lambda's JSON (base64 text)."""
    from ddb_bridge.core.codec import encode_image

    return encode_image(item)


@pytest.mark.parametrize("log_keys", ["plain", "hash"])
def test_the_relay_and_the_applier_log_no_values(
    aws: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, log_keys: str
) -> None:
    world = TwoRegions(
        relay_env={**debug("relay"), "LOG_KEYS": log_keys}, applier_env={**debug("applier"), "LOG_KEYS": log_keys}
    )
    client = world.b.applier.layer_module("ddb_bridge.relay.applier").runtime().local.dynamodb
    inject(
        client, "BatchWriteItem", Fault("ValidationException", times=10**9, when=lambda r: b"refused-by-b" in r.body)
    )
    now = int(time.time() * 1000)
    for pk in (KEY_MARKER, "refused-by-b"):
        world.a.ddb.put_item(TableName=world.a.table, Item=secret_item(pk, str(now), world.a.tag))
    world.a.ddb.put_item(TableName=world.a.table, Item=secret_item("ahead", str(now + 86_400_000), world.a.tag))
    world.drain()
    # a local write older than what the region holds: reverted, and its key logged (hashed with LOG_KEYS=hash)
    world.a.ddb.put_item(TableName=world.a.table, Item=secret_item(KEY_MARKER, str(now - 5000), world.a.tag))
    world.drain()
    # malformed stream records straight into the relay
    assert world.a.relay is not None
    world.a.relay.invoke({"Records": [wire_record(900 + i, item["pk"]["S"], item) for i, item in enumerate(MALFORMED)]})
    logs = captured(capfd, caplog)
    parked = world.a.parked() + world.b.parked()
    assert {m["reason"] for m in parked} >= {"FutureVersion", "ValidationException", "InvalidValue", "ItemTooLarge"}
    assert "putting the newer state back" in logs
    assert scan(logs, keys=log_keys == "hash") == []
    assert scan(errors_of(parked), keys=log_keys == "hash") == []


def test_the_backfill_logs_no_values(
    aws: Any, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    world = load_world(TableShape(key_schema=[("pk", "S")]))
    world.create_target_table()
    world.create_backfill_tables()
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue = sqs.create_queue(QueueName="backfill-parking-logs")["QueueUrl"]
    world.seed([secret_item(f"k{i}") for i in range(5)] + [secret_item(KEY_MARKER)])
    settings = BackfillSettings.from_env(world.backfill_env(PARKING_QUEUE_URL=queue, LOG_KEYS="hash"))

    class Refusing(TargetAccess):
        def client(self, service: str, *, pool: int = 10) -> Any:
            client = super().client(service, pool=pool)
            refuse = Fault("ValidationException", times=10**9, when=lambda r: KEY_MARKER.encode() in r.body)
            for operation in ("BatchWriteItem", "PutItem"):
                inject(client, operation, refuse)
            return client

    clients = BackfillClients(
        source=boto3.client("dynamodb", region_name="us-east-1"),
        target=Refusing(settings.target, None),
        sleep=lambda s: None,
        parking=ParkingLot(queue, source="backfill", region="us-east-1"),
    )
    state = {"backfillId": "logs", "segment": 0, "totalSegments": 1, "writeMode": "overwrite"}
    out = copy_segment(state, settings, clients, owner="test", budget_seconds=60)
    assert out["parked"] == 1 and out["copied"] == 5
    message = json.loads(sqs.receive_message(QueueUrl=queue)["Messages"][0]["Body"])
    logs = captured(capfd, caplog)
    assert "sha256:" in message["error"] and "item parked" in logs  # LOG_KEYS=hash: the key hashed
    assert scan(logs, keys=True) == [] and scan(message["error"], keys=True) == []


def test_a_batch_sent_to_the_on_failure_queue_carries_no_values(aws: Any) -> None:
    world = one_way_world()
    fn = LocalFunction("table_replicator", world.replicator_env())
    fn.invoke({"Records": []})
    client = fn.layer_module("ddb_bridge.core.clients").target_sessions.current().dynamodb
    inject(client, "BatchWriteItem", Fault("AccessDeniedException", times=10**9))
    world.source.put_item(TableName=world.source_table, Item=secret_item("x"))
    poller = StreamPoller(
        world.streams,
        world.stream_arn,
        fn.invoke,
        max_retries=1,
        on_failure=sqs_on_failure(world.sqs, world.on_failure_url),
    )
    poller.drain()
    (message,) = world.sqs.receive_message(QueueUrl=world.on_failure_url)["Messages"]
    assert scan(message["Body"]) == [] and "DDBStreamBatchInfo" in message["Body"]
