"""`make invoke FN=<function> EVENT=events/<file>.json`: `sam local invoke -e` for machines without Docker.

Starts moto, builds the world the function needs (tables with the event's key schema, queues, the
target account), runs the function once with the event and prints the response and what it wrote.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "bridge"), str(ROOT)]
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
logging.getLogger("werkzeug").setLevel(logging.ERROR)

from ddb_bridge.core.codec import encode_image  # noqa: E402
from harness import moto_server  # noqa: E402
from harness.events import key_schema_of, load  # noqa: E402
from harness.lambdas import LocalFunction  # noqa: E402
from harness.workload import every_type_item  # noqa: E402
from harness.world import one_way_world, scan_all  # noqa: E402


def show(title: str, value: Any) -> None:
    """Print a titled JSON block (binary as base64, as DynamoDB JSON shows it)."""
    print(f"--- {title}")
    print(json.dumps(value, indent=2, default=str))


def invoke_table_replicator(event: dict[str, Any]) -> None:
    """table_replicator: source account stream -> target account table."""
    world = one_way_world(key_schema_of(event))
    fn = LocalFunction("table_replicator", world.replicator_env())
    show("response", fn.invoke(event))
    show(
        f"target table {world.target_table} (account {moto_server.TARGET_ACCOUNT}, eu-west-1)",
        [encode_image(item) for item in scan_all(world.target, world.target_table).values()],
    )
    show("parked records", world.parked())


def invoke_full_load_control(event: dict[str, Any]) -> None:
    """full_load_control: one step of the full-load workflow (the plan event needs no export yet)."""
    from harness.load_world import load_world

    world = load_world()
    world.seed([every_type_item(i) for i in range(20)])
    show("response", LocalFunction("full_load_control", world.full_load_env()).invoke(event))


def invoke_backfill(event: dict[str, Any]) -> None:
    """backfill: a plan, or one bounded call copying a scan segment into an existing target table."""
    from harness.load_world import TableShape, load_world

    world = load_world(TableShape(stream_view=None, pitr=False))
    world.seed([every_type_item(i) for i in range(50)])
    world.create_target_table()
    world.create_backfill_tables()
    fn = LocalFunction("backfill", world.backfill_env())
    show("response", fn.invoke(event))
    show(f"target table {world.target_table}: items", len(scan_all(world.target, world.target_table)))


def invoke_verify(event: dict[str, Any]) -> None:
    """verify: a plan, or one bounded call comparing a scan segment (the target lacks two of 50 items)."""
    from harness.load_world import TableShape, load_world
    from harness.verify import create_verify_resources, verify_env

    world = load_world(TableShape(stream_view=None, pitr=False))
    items = [every_type_item(i) for i in range(50)]
    world.seed(items)
    world.create_target_table()
    for item in items[2:]:
        world.target.put_item(TableName=world.target_table, Item=item)
    create_verify_resources(world)
    fn = LocalFunction("verify", verify_env(world))
    if event.get("action") != "plan":
        fn.invoke({"action": "plan", "execution": "invoke", "input": {"verifyId": event.get("verifyId")}})
    show("response", fn.invoke(event))


def _kinesis_schema(event: dict[str, Any]) -> list[tuple[str, str]]:
    """The key schema of a Kinesis event's first decodable pack."""
    from ddb_bridge.relay.packs import MalformedPack, decode

    for record in event["Records"]:
        try:
            pack = decode(base64.b64decode(record["kinesis"]["data"]))
        except (MalformedPack, ValueError, KeyError):
            continue
        if pack.changes:
            return [(name, next(iter(value))) for name, value in pack.changes[0].keys.items()]
    raise SystemExit("no decodable pack in the event")


def invoke_stream_relay(event: dict[str, Any]) -> None:
    """stream_relay in Beijing: local stream -> Singapore's Kinesis stream (what crossed is shown)."""
    from ddb_bridge.relay.packs import decode
    from harness.bidirectional import TwoRegions

    world = TwoRegions(name="invoke")
    world.reset_tables(key_schema_of(event))
    peer = world.b
    shards = peer.kinesis.list_shards(StreamName=peer.kinesis_stream)["Shards"]
    iterators = [
        peer.kinesis.get_shard_iterator(
            StreamName=peer.kinesis_stream, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
        )["ShardIterator"]
        for shard in shards
    ]
    show("response", world.a.relay.invoke(event))
    crossed = [
        change.to_json()
        for it in iterators
        for record in peer.kinesis.get_records(ShardIterator=it)["Records"]
        for change in decode(record["Data"]).changes
    ]
    show(f"changes sent to {peer.region}'s Kinesis stream", crossed)
    show("parked records", world.a.parked())


def invoke_relay_applier(event: dict[str, Any]) -> None:
    """relay_applier in Singapore: Kinesis records from Beijing -> the local table."""
    from harness.bidirectional import TwoRegions

    world = TwoRegions(name="invoke", tombstone_ttl=False)
    world.reset_tables(_kinesis_schema(event))
    show("response", world.b.applier.invoke(event))
    show(f"table in {world.b.region}", [encode_image(item) for item in world.b.items().values()])
    show("parked records", world.b.parked())


def _bucket_world(event: dict[str, Any]) -> Any:
    """The source bucket (named as in the event), its objects, and the target bucket in another account."""
    from ddb_bridge.s3.events import ObjectEvent, parse_body
    from harness.s3_world import bucket_world

    world = bucket_world(notify=False)
    text = json.dumps(event).replace("media-src", world.source_bucket)
    event.clear()
    event.update(json.loads(text))
    for record in event.get("Records", []):
        try:
            items = parse_body(record["body"])
        except Exception:  # noqa: BLE001 - a malformed sample: the function parks it
            continue
        for item in items:
            if isinstance(item, ObjectEvent) and item.kind == "created":
                world.put(item.key, f"sample body of {item.key}".encode(), ContentType="text/plain")
    return world


def invoke_bucket_replicator(event: dict[str, Any]) -> None:
    """bucket_replicator: SQS messages of bucket events -> the target bucket (another account)."""
    world = _bucket_world(event)
    show("response", world.replicator().invoke(event))
    show(
        f"target bucket {world.target_bucket} (account {moto_server.TARGET_ACCOUNT}, eu-west-1)",
        {k: v.decode(errors="replace") for k, v in world.target_contents().items()},
    )
    show("parked messages", world.parked())


def invoke_bucket_backfill(event: dict[str, Any]) -> None:
    """bucket_backfill: a plan of key ranges over a bucket of a few objects."""
    world = _bucket_world(event)
    for i in range(20):
        world.put(f"{'abcd'[i % 4]}/object-{i:03d}.txt", b"x" * (i + 1))
    world.create_progress_table()
    show(
        "response", LocalFunction("bucket_backfill", world.env(POWERTOOLS_SERVICE_NAME="bucket_backfill")).invoke(event)
    )


SETUPS: dict[str, Callable[[dict[str, Any]], None]] = {
    "stream_relay": invoke_stream_relay,
    "relay_applier": invoke_relay_applier,
    "table_replicator": invoke_table_replicator,
    "bucket_replicator": invoke_bucket_replicator,
    "bucket_backfill": invoke_bucket_backfill,
    "full_load_control": invoke_full_load_control,
    "backfill": invoke_backfill,
    "verify": invoke_verify,
}


def main(argv: list[str]) -> int:
    """Invoke one function with one event file."""
    if len(argv) != 2 or argv[0] not in SETUPS:
        print(f"usage: make invoke FN=<{'|'.join(sorted(SETUPS))}> EVENT=events/<file>.json", file=sys.stderr)
        return 2
    name, path = argv
    event = load(path)
    aws = moto_server.start()
    try:
        SETUPS[name](event)
        return 0
    finally:
        aws.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
