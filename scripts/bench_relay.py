"""Benchmark of the bidirectional relay: bytes and PutRecords calls per change against a baseline, same run.

The same workload (puts of new order-like items of every attribute type, with ids, binary and free
text, ~0.5-1 KB; updates; deletes) is written twice
into Beijing's table, and relayed to Singapore through stream_relay -> Kinesis -> relay_applier:
- ours: several changes packed per Kinesis record, zlib-compressed (the defaults);
- baseline: one plain JSON record per change (what public samples send), through the same code with
  packing and compression off (RELAY_PACK_BYTES=1, RELAY_COMPRESS=false).
Reported per change crossing the border: bytes, PutRecords calls, Kinesis records, 25 KB PUT payload
units; and changes/s from Beijing's stream to Singapore's table (relay + applier, moto over HTTP on
this machine, so only the ratio between the two runs means much). `run() -> dict` for `make bench`;
standalone: `python scripts/bench_relay.py`.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [p for p in (str(ROOT / "layers" / "bridge"), str(ROOT)) if p not in sys.path]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
logging.getLogger("werkzeug").setLevel(logging.ERROR)

from harness import moto_server  # noqa: E402
from harness.bidirectional import Delivery, TwoRegions  # noqa: E402
from harness.lww import canonical_item, random_body  # noqa: E402

CHANGES = int(os.environ.get("BENCH_RELAY_CHANGES", "1500"))
PUT_UNIT = 25 * 1024  # Kinesis provisioned mode bills PUT payload units of 25 KB per record
CONFIGS = {
    "ours": {},
    "baseline": {"RELAY_PACK_BYTES": "1", "RELAY_COMPRESS": "false"},
}


WORDS = [
    "order",
    "customer",
    "shipped",
    "paid",
    "pending",
    "warehouse",
    "beijing",
    "singapore",
    "express",
    "standard",
    "parcel",
    "invoice",
    "refund",
    "discount",
    "coupon",
    "premium",
    "member",
    "address",
    "street",
    "district",
    "province",
    "postal",
    "phone",
    "email",
    "note",
]


def realistic_body(rng: random.Random) -> dict[str, Any]:
    """An order-like item: every attribute type, ids and free text that compress like real data."""
    body = random_body(rng)
    body["customer_id"] = {"S": f"cust-{rng.getrandbits(64):016x}"}
    body["note"] = {"S": " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80)))}
    body["items"] = {
        "L": [
            {"M": {"sku": {"S": f"SKU-{rng.randint(10000, 99999)}"}, "qty": {"N": str(rng.randint(1, 9))}}}
            for _ in range(rng.randint(1, 6))
        ]
    }
    body["signature"] = {"B": rng.randbytes(rng.randint(16, 64))}
    return body


def workload(changes: int, seed: int = 11) -> list[tuple[str, dict[str, Any]]]:
    """The same list of writes for every run: 70% new items, 20% updates, 10% deletes."""
    rng = random.Random(seed)
    ts = 1_800_000_000_000
    out: list[tuple[str, dict[str, Any]]] = []
    created: list[int] = []
    for n in range(changes):
        ts += 1
        roll = rng.random()
        stamp = {"last_update_timestamp": {"N": str(ts)}, "last_updater_region": {"S": "cn-north-1"}}
        if roll < 0.7 or len(created) < 10:
            created.append(n)
            key = {"pk": {"S": f"order#{n:07d}"}, "sk": {"N": str(n % 5)}}
            out.append(("put", {**realistic_body(rng), **key, **stamp}))
            continue
        i = rng.choice(created)
        key = {"pk": {"S": f"order#{i:07d}"}, "sk": {"N": str(i % 5)}}
        if roll < 0.9:
            out.append(("put", {**realistic_body(rng), **key, **stamp}))
        else:
            created.remove(i)
            out.append(("delete", key))
    return out


def write(world: TwoRegions, writes: list[tuple[str, dict[str, Any]]]) -> None:
    """Write the workload into Beijing's table, 25 per BatchWriteItem (no key twice in one call)."""
    pending = list(writes)
    while pending:
        batch: list[dict[str, Any]] = []
        keys: set[str] = set()
        rest: list[tuple[str, dict[str, Any]]] = []
        for kind, body in pending:
            key = body["pk"]["S"] + body["sk"]["N"]
            if len(batch) < 25 and key not in keys and not any(key == k for k in _keys(rest)):
                keys.add(key)
                batch.append({"PutRequest": {"Item": body}} if kind == "put" else {"DeleteRequest": {"Key": body}})
            else:
                rest.append((kind, body))
        request = {world.a.table: batch}
        while request:
            request = world.a.ddb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
        pending = rest


def _keys(writes: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [body["pk"]["S"] + body["sk"]["N"] for _, body in writes]


def measure(name: str, env: dict[str, str], writes: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One run: write, then time Beijing's stream -> Singapore's table."""
    world = TwoRegions(
        [("pk", "S"), ("sk", "N")],
        name=f"bench-relay-{name}",
        relay_env=env,
        delivery=Delivery(batch_size=1000),
        write_concurrency=8,
        tombstone_ttl=False,
    )
    assert world.a.kinesis_poller is not None and world.b.kinesis_poller is not None
    world.b.kinesis_poller.batch_size = 100  # the applier's Kinesis batch (template: ApplierBatchSize)
    write(world, writes)
    started = time.monotonic()
    world.drain(max_polls=100_000)
    seconds = time.monotonic() - started
    relays = world.a.relay_reports
    forwarded = sum(r.forwarded for r in relays)
    a = {k: canonical_item(v) for k, v in world.a.items().items()}
    b = {k: canonical_item(v) for k, v in world.b.items().items()}
    sizes = _record_sizes(world)
    return {
        "stream_records": sum(r.records for r in relays),
        "changes_across": forwarded,
        "bytes_per_change": round(sum(r.bytes_sent for r in relays) / max(1, forwarded), 1),
        "put_records_calls_per_change": round(sum(r.put_calls for r in relays) / max(1, forwarded), 5),
        "kinesis_records_per_change": round(sum(r.kinesis_records for r in relays) / max(1, forwarded), 4),
        "put_payload_units_per_change": round(sum(math.ceil(s / PUT_UNIT) for s in sizes) / max(1, forwarded), 4),
        "changes_per_second": round(forwarded / seconds, 1) if seconds else 0.0,
        "seconds": round(seconds, 2),
        "applied": sum(r.applied for r in world.b.applier_reports),
        "mismatches": sum(1 for k in a.keys() | b.keys() if a.get(k) != b.get(k)),
    }


def _record_sizes(world: TwoRegions) -> list[int]:
    kinesis, stream = world.b.kinesis, world.b.kinesis_stream
    sizes: list[int] = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
        iterator = it["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            sizes.extend(len(r["Data"]) + len(r["PartitionKey"]) for r in page["Records"])
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return sizes


def run(changes: int = CHANGES) -> dict[str, Any]:
    """Both runs on the same workload; the figures and our/baseline ratios."""
    own = None if os.environ.get("AWS_ENDPOINT_URL") else moto_server.start()
    try:
        writes = workload(changes)
        results = {name: measure(name, env, writes) for name, env in CONFIGS.items()}
    finally:
        if own is not None:
            own.stop()
    ours, base = results["ours"], results["baseline"]
    results["ratios"] = {
        "bytes_per_change": round(ours["bytes_per_change"] / max(1e-9, base["bytes_per_change"]), 3),
        "put_records_calls_per_change": round(
            ours["put_records_calls_per_change"] / max(1e-9, base["put_records_calls_per_change"]), 3
        ),
        "put_payload_units_per_change": round(
            ours["put_payload_units_per_change"] / max(1e-9, base["put_payload_units_per_change"]), 3
        ),
        "changes_per_second": round(ours["changes_per_second"] / max(1e-9, base["changes_per_second"]), 2),
    }
    results["workload"] = {"changes": changes, "puts_new": "70%", "updates": "20%", "deletes": "10%"}
    return results


if __name__ == "__main__":
    import json

    figures = run()
    print(json.dumps(figures, indent=2))
    sys.exit(0 if figures["ours"]["mismatches"] == 0 and figures["baseline"]["mismatches"] == 0 else 1)
