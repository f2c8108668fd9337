"""Benchmark of bidirectional replication: ddb-bridge's relay + applier against the public sample's design, same run.

The designs replicate the same workload between Beijing and Singapore in the same harness (moto over
HTTP, Lambda-faithful event sources): ddb-bridge as it is (stream_relay -> packed Kinesis records ->
relay_applier) in both stamp modes (`ours`: application stamps; `ours_bridge`: bridge-owned stamps, the
writers stamping nothing), and our model of AWS's public China <-> Global sample
(`harness/sample_replication.py`: one `str(dict)` Kinesis record and one conditional PutItem/DeleteItem per
change, which needs every writer to stamp).

Workload (seeded, identical for both): `BENCH_RELAY_CHANGES` application writes (default 2,000),
70% puts of new order-like items (~0.7-1.3 KB, every attribute type), 20% updates (UpdateItem of two
attributes and the stamp), 10% deletes, made in both regions over `BENCH_RELAY_ROUNDS` rounds (default
4). In each round both regions write, then replication drains; 20% of the writes are conflicts: the
same item written in both regions in the same round, i.e. within the replication window (new items
created in both, updates in both, an update against a delete); a quarter of those pairs carry the same
millisecond. Every write is stamped (`last_update_timestamp` in ms, `last_updater_region`) except in the
bridge-owned run, whose writers write the same items without the two attributes.

Per application write, for relay + applier of both regions, from `harness/billing.py`'s meter (every
request the functions send, billed as AWS documents it): billed write units, read units, requests,
Kinesis records and PUT payload units, bytes across the border; and changes/s: application writes
divided by the time replication took (from the first poll of a round to its last apply, summed over
rounds; the writes themselves are made before and are not timed). At the end both tables of each design
are compared item by item; the sample is expected to diverge, and how it does is reported. A second,
small run repeats the comparison under hostile delivery (PutRecords partial failures, duplicated and
late Kinesis records, shuffled batches). Printed as one JSON object; `ratios` are ours (application stamps)
/ the sample's, `ratios_bridge` ours (bridge-owned stamps) / the sample's.
`run() -> dict` for `make bench`; standalone: `python scripts/bench_relay.py` (a few minutes).
"""

from __future__ import annotations

import base64
import itertools
import logging
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [p for p in (str(ROOT / "layers" / "bridge"), str(ROOT)) if p not in sys.path]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
logging.getLogger("werkzeug").setLevel(logging.ERROR)

import boto3  # noqa: E402

from harness import moto_server  # noqa: E402
from harness.bidirectional import BRIDGE_ATTR, REGION_A, REGION_B, Delivery, TwoRegions  # noqa: E402
from harness.billing import Bill, Meter, moto_sizer  # noqa: E402
from harness.lww import canonical_item, random_body  # noqa: E402
from harness.sample_replication import SampleTwoRegions  # noqa: E402
from harness.world import canonical_key, create_table  # noqa: E402

CHANGES = int(os.environ.get("BENCH_RELAY_CHANGES", "2000"))
ROUNDS = int(os.environ.get("BENCH_RELAY_ROUNDS", "4"))
HOSTILE_CHANGES = int(os.environ.get("BENCH_RELAY_HOSTILE_CHANGES", "400"))
ROUND_TRIP_MS = float(os.environ.get("BENCH_RELAY_ROUND_TRIP_MS", "3"))  # 0: no pass with a modelled round trip
CONFLICTS = 0.2
TIES = 0.25  # share of conflicting pairs stamped in the very same millisecond
KEY_SCHEMA = [("pk", "S"), ("sk", "N")]
TS, ORIGIN = "last_update_timestamp", "last_updater_region"

WORDS = [
    *("order", "customer", "shipped", "paid", "pending", "warehouse", "beijing", "singapore", "express"),
    *("standard", "parcel", "invoice", "refund", "discount", "coupon", "premium", "member", "address"),
    *("street", "district", "province", "postal", "phone", "email", "note"),
]


# -- the workload -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Op:
    """One application write: which region, what, on which item; `tie` pairs share one stamp."""

    region: str  # "a" or "b"
    kind: str  # "put", "update", "delete"
    item: int
    seed: int
    tie: int | None = None


@dataclass
class Plan:
    """The rounds of writes, and what they hold."""

    rounds: list[list[Op]] = field(default_factory=list)
    conflict_pairs: int = 0
    tie_pairs: int = 0

    @property
    def writes(self) -> int:
        """Application writes in the plan."""
        return sum(len(r) for r in self.rounds)

    def count(self, kind: str) -> int:
        """Writes of one kind."""
        return sum(1 for r in self.rounds for op in r if op.kind == kind)


def plan(changes: int, rounds: int = ROUNDS, seed: int = 11) -> Plan:
    """70% puts of new items, 20% updates, 10% deletes; 20% of the writes in conflicting pairs."""
    rng = random.Random(seed)
    puts, updates = round(changes * 0.7), round(changes * 0.2)
    deletes = changes - puts - updates
    pairs = round(changes * CONFLICTS / 2)
    put_pairs, update_delete_pairs = pairs // 2, pairs // 5
    update_pairs = pairs - put_pairs - update_delete_pairs
    singles = (
        ["put"] * (puts - 2 * put_pairs)
        + ["update"] * (updates - 2 * update_pairs - update_delete_pairs)
        + ["delete"] * (deletes - update_delete_pairs)
    )
    kinds = ["pp"] * put_pairs + ["uu"] * update_pairs + ["ud"] * update_delete_pairs + singles
    out = Plan(rounds=[[] for _ in range(rounds)], conflict_pairs=pairs)
    later = list(range(1, rounds)) or [0]
    slots: list[list[str]] = [[] for _ in range(rounds)]
    for kind in kinds:  # creations anywhere; updates and deletes only once something exists
        slots[rng.randrange(rounds) if kind in ("put", "pp") else rng.choice(later)].append(kind)
    live: list[int] = []
    next_item = 0
    ties = 0
    for r, kinds_of_round in enumerate(slots):
        rng.shuffle(kinds_of_round)
        kinds_of_round.sort(key=lambda k: k not in ("put", "pp"))  # this round's creations are not yet live
        busy: set[int] = set()
        created: list[int] = []
        for kind in kinds_of_round:
            s = rng.getrandbits(32)
            if kind in ("put", "pp"):
                item, next_item = next_item, next_item + 1
                created.append(item)
                if kind == "put":
                    out.rounds[r].append(Op(rng.choice("ab"), "put", item, s))
                    continue
            else:
                choices = [i for i in live if i not in busy]
                if not choices:  # a tiny plan: nothing left to change this round, so create instead
                    item, next_item = next_item, next_item + 1
                    created.append(item)
                    out.rounds[r].append(Op(rng.choice("ab"), "put", item, s))
                    continue
                item = rng.choice(choices)
            busy.add(item)
            if kind in ("update", "delete"):
                out.rounds[r].append(Op(rng.choice("ab"), kind, item, s))
            else:
                tie = ties if rng.random() < TIES else None
                ties += tie is not None
                first, second = ("put", "put") if kind == "pp" else ("update", "update" if kind == "uu" else "delete")
                out.rounds[r].append(Op("a", first, item, s, tie))
                out.rounds[r].append(Op("b", second, item, s + 1, tie))
            if kind == "delete" or kind == "ud":
                live.remove(item)
        live.extend(created)
    out.tie_pairs = ties
    return out


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


def key_of(item: int) -> dict[str, Any]:
    """Item i's key: a string hash key and a number range key."""
    return {"pk": {"S": f"order#{item:07d}"}, "sk": {"N": str(item % 5)}}


class Stamps:
    """A region's stamps: wall-clock milliseconds, strictly increasing per item."""

    def __init__(self) -> None:
        self.last: dict[int, int] = {}

    def peek(self, item: int) -> int:
        """The stamp the item's next write would get."""
        return max(int(time.time() * 1000), self.last.get(item, 0) + 1)

    def take(self, item: int, exactly: int | None = None) -> int:
        """The next stamp (or exactly this one, for a tie)."""
        ts = self.peek(item) if exactly is None else exactly
        self.last[item] = max(self.last.get(item, 0), ts)
        return ts


def write_round(
    ops: list[Op],
    clients: dict[str, Any],
    tags: dict[str, str],
    table: str,
    stamps: dict[str, Stamps],
    *,
    stamped: bool = True,
) -> None:
    """Make one round's writes, as the applications of both regions would (unmetered clients).

    `stamped=False`: the same writes without `last_update_timestamp` / `last_updater_region` (bridge-owned stamps).
    """
    tie_stamps: dict[int, int] = {}
    for op in ops:
        ddb, key, rng = clients[op.region], key_of(op.item), random.Random(op.seed)
        if op.kind == "delete":
            ddb.delete_item(TableName=table, Key=key)
            continue
        exactly = None
        if op.tie is not None:
            if op.tie not in tie_stamps:
                tie_stamps[op.tie] = max(s.peek(op.item) for s in stamps.values())
            exactly = tie_stamps[op.tie]
        stamp = {TS: {"N": str(stamps[op.region].take(op.item, exactly))}, ORIGIN: {"S": tags[op.region]}}
        if op.kind == "put":
            ddb.put_item(TableName=table, Item={**realistic_body(rng), **key, **(stamp if stamped else {})})
        else:
            names = {"#s": "status", "#t": "total"}
            values = {":s": {"S": rng.choice(["PAID", "SHIPPED", "RETURNED"])}, ":t": {"N": str(rng.randint(1, 10**6))}}
            expression = "SET #s = :s, #t = :t"
            if stamped:
                names.update({"#ts": TS, "#o": ORIGIN})
                values.update({":ts": stamp[TS], ":o": stamp[ORIGIN]})
                expression += ", #ts = :ts, #o = :o"
            ddb.update_item(
                TableName=table,
                Key=key,
                UpdateExpression=expression,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )


# -- comparing the two regions --------------------------------------------------------------------------
def _unwrap_b64(value: Any) -> Any:
    """A binary that holds base64 text of other bytes, as the sample's double encoding leaves it, decoded."""
    try:
        return base64.b64decode(bytes(value), validate=True)
    except (ValueError, TypeError):
        return value


def _binary_only(a: Any, b: Any) -> bool:
    """Whether two attribute values differ only by a double-encoded binary somewhere."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return False
        if set(a) == {"B"}:
            return bytes(a["B"]) == _unwrap_b64(b["B"]) or bytes(b["B"]) == _unwrap_b64(a["B"])
        return all(a[k] == b[k] or _binary_only(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(x == y or _binary_only(x, y) for x, y in zip(a, b, strict=True))
    return False


def compare(a_items: dict[str, Any], b_items: dict[str, Any]) -> dict[str, int]:
    """Mismatches between the regions, by kind (the bridge's own attribute aside: each region keeps its own)."""
    a_items = {k: {n: v for n, v in item.items() if n != BRIDGE_ATTR} for k, item in a_items.items()}
    b_items = {k: {n: v for n, v in item.items() if n != BRIDGE_ATTR} for k, item in b_items.items()}
    out = {"items": len(a_items.keys() | b_items.keys()), "mismatches": 0, "only_in_one_region": 0}
    out.update({"different_versions": 0, "binary_double_encoded": 0, "other_content": 0})
    for key in a_items.keys() | b_items.keys():
        a, b = a_items.get(key), b_items.get(key)
        if a == b:
            continue
        out["mismatches"] += 1
        if a is None or b is None:
            out["only_in_one_region"] += 1
        elif (a.get(TS), a.get(ORIGIN)) != (b.get(TS), b.get(ORIGIN)):
            out["different_versions"] += 1
        elif _binary_only(a, b):
            out["binary_double_encoded"] += 1
        else:
            out["other_content"] += 1
    return out


# -- the two designs ------------------------------------------------------------------------------------
@dataclass
class Design:
    """A design under test: its world, what to meter, and how to read its counters."""

    name: str
    world: Any
    table: str
    counters: Callable[[], dict[str, Any]]
    stamped: bool = True  # its writers stamp (the sample, ours with application stamps)
    functions: Clock = field(default_factory=lambda: Clock())  # time inside the relay and applier handlers

    def time_functions(self) -> None:
        """Time every invocation of the design's functions (both regions, relay and applier)."""
        for side in self.world.sides:
            for poller in (side.stream_poller, side.kinesis_poller):
                poller.handler = self.functions.timing(poller.handler)


class Clock:
    """Wall and CPU time (this process, every thread) spent inside the calls it wraps."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def timing(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        """The handler, timed."""

        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.monotonic(), time.process_time()
            try:
                return handler(*args, **kwargs)
            finally:
                self.wall += time.monotonic() - wall
                self.cpu += time.process_time() - cpu

        return timed


def ours(name: str, delivery: Delivery, meter: Meter, stamp_mode: str = "application") -> Design:
    """ddb-bridge as deployed: relay batches of 1,000 stream records, applier batches of 100 packs."""
    world = TwoRegions(
        KEY_SCHEMA, name=name, delivery=delivery, write_concurrency=8, tombstone_ttl=False, stamp_mode=stamp_mode
    )
    for side in world.sides:
        assert side.relay is not None and side.applier is not None and side.kinesis_poller is not None
        side.kinesis_poller.batch_size = 100  # the template's ApplierBatchSize
        meter.watch_dynamodb(side.relay_runtime().local.dynamodb, "relay")
        meter.watch_dynamodb(side.applier.layer_module("ddb_bridge.relay.applier").runtime().local.dynamodb, "applier")
        peer = side.relay_runtime().peer
        make = peer.client_factory

        def metered(session: Any, region: str, config: Any, make: Any = make) -> Any:
            client = make(session, region, config)
            meter.watch_kinesis(getattr(client, "_client", client), "relay")
            return client

        peer.client_factory = metered
        peer.client()  # warm, as the sample's clients are: the cold start (key fetch, client build) is not timed

    def counters() -> dict[str, Any]:
        relays = [r for s in world.sides for r in s.relay_reports]
        appliers = [r for s in world.sides for r in s.applier_reports]
        return {
            "stream_records_relayed": sum(r.records for r in relays),
            "changes_across": sum(r.forwarded for r in relays),
            "coalesced": sum(r.coalesced for r in relays) + sum(r.coalesced for r in appliers),
            "applied": sum(r.applied for r in appliers),
            "stale": sum(r.stale for r in appliers),
            "duplicates": sum(r.duplicate for r in appliers),
            "local_writes_reverted": sum(r.reverted for r in relays),
            "versions_recorded": sum(r.versions_recorded for r in relays),
            "echoes_dropped": sum(r.echoes_dropped for r in relays) + sum(s.filtered_out for s in world.sides),
            "parked": sum(r.parked for r in relays) + sum(r.parked for r in appliers),
        }

    if stamp_mode == "bridge":
        return Design("ours_bridge", world, world.name, counters, stamped=False)
    return Design("ours", world, world.name, counters)


def ours_bridge(name: str, delivery: Delivery, meter: Meter) -> Design:
    """ddb-bridge with bridge-owned stamps: the writers stamp nothing."""
    return ours(name, delivery, meter, "bridge")


def sample(name: str, delivery: Delivery, meter: Meter) -> Design:
    """The sample's design: batches of 500 on both event sources."""
    world = SampleTwoRegions(
        KEY_SCHEMA, name=name, delivery=delivery, kinesis_wrapper=lambda c: meter.watch_kinesis(c, "relay")
    )
    for side in world.sides:
        assert side.replicator is not None
        meter.watch_dynamodb(side.replicator.ddb, "applier")

    def counters() -> dict[str, Any]:
        stats = [s.stats for s in world.sides]
        return {
            "stream_records_relayed": None,
            "changes_across": sum(s.records_sent for s in stats),
            "removes_sent_back_and_forth": sum(s.removes_sent for s in stats),
            "applied": sum(s.applied for s in stats),
            "stale": sum(s.stale for s in stats),
            "skipped_as_replicated": sum(s.skipped for s in stats),
            "relay_batches_failed_and_retried": sum(s.relay_errors for s in stats),
            "replicator_batches_failed_and_retried": sum(s.replicator_errors for s in stats),
            "records_given_up": sum(len(side.on_failure) for side in world.sides),
        }

    return Design("sample", world, world.name, counters)


def server_cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) of moto's own process so far; 0 when moto runs in this process."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    designs: list[tuple[Design, Meter]], work: Plan, server_pid: int | None = None
) -> dict[str, dict[str, Any]]:
    """Write the plan round by round into both regions of every design, replicating each round.

    The designs take turns round by round (the first one alternates), so a change in the machine's
    load falls on both alike. Figures are per application write. Time is split into the functions'
    (inside the relay and applier handlers: what Lambda runs) and the event sources' (the harness
    polling streams and building events: Lambda's pollers on AWS), CPU into this process's and, when
    moto runs in its own process, moto's.
    """
    clients = {"a": boto3.client("dynamodb", region_name=REGION_A), "b": boto3.client("dynamodb", region_name=REGION_B)}
    stamps = {d.name: {"a": Stamps(), "b": Stamps()} for d, _ in designs}
    seconds = dict.fromkeys(stamps, 0.0)
    client_cpu = dict.fromkeys(stamps, 0.0)
    server_cpu = dict.fromkeys(stamps, 0.0)
    for design, _ in designs:
        design.time_functions()
    for number, ops in enumerate(work.rounds):
        for design, _ in designs if number % 2 == 0 else list(reversed(designs)):
            tags = {"a": design.world.a.tag, "b": design.world.b.tag}
            write_round(ops, clients, tags, design.table, stamps[design.name], stamped=design.stamped)
            started, cpu, server = time.monotonic(), time.process_time(), server_cpu_seconds(server_pid)
            design.world.drain(max_polls=100_000)
            seconds[design.name] += time.monotonic() - started
            client_cpu[design.name] += time.process_time() - cpu
            server_cpu[design.name] += server_cpu_seconds(server_pid) - server
    out: dict[str, dict[str, Any]] = {}
    for design, meter in designs:
        a_items = {k: canonical_item(v) for k, v in scan(REGION_A, design.table).items()}
        b_items = {k: canonical_item(v) for k, v in scan(REGION_B, design.table).items()}
        writes = work.writes
        relay, applier = meter.bill("relay"), meter.bill("applier")
        total = Bill()
        total.add(relay)
        total.add(applier)
        took = seconds[design.name]
        inside = design.functions.wall

        def ms(value: float, writes: int = writes) -> float:
            return round(value * 1000 / writes, 3)

        out[design.name] = {
            "per_change": {"relay": relay.per(writes), "applier": applier.per(writes), "total": total.per(writes)},
            "write_units_by_table": dict(total.write_units_by_table),
            "requests_by_operation": dict(total.requests),
            "changes_per_second": round(writes / took, 1) if took else 0.0,
            "function_changes_per_second": round(writes / inside, 1) if inside else 0.0,
            "replication_seconds": round(took, 2),
            "ms_per_change": {
                "wall": ms(took),
                "functions": ms(inside),
                "event_sources": ms(took - inside),
                "functions_cpu": ms(design.functions.cpu),
                "this_process_cpu": ms(client_cpu[design.name]),
                "moto_process_cpu": ms(server_cpu[design.name]) if server_pid is not None else None,
            },
            "counters": design.counters(),
            "convergence": compare(a_items, b_items),
        }
    return out


def scan(region: str, table: str) -> dict[str, dict[str, Any]]:
    """Every item of a table (consistent scan, an unmetered client), keyed by canonical key."""
    ddb = boto3.client("dynamodb", region_name=region)
    items: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = ddb.scan(**kwargs)
        for item in page.get("Items", []):
            items[canonical_key({n: item[n] for n, _ in KEY_SCHEMA})] = item
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def moto_costs(repeat: int = 9) -> dict[str, float]:
    """What moto charges here (ms, median of `repeat`), per request and per item, for the calls the designs make.

    The table has a stream, as the replicated tables do (moto writes a stream record per item written).
    """
    ddb = boto3.client("dynamodb", region_name=REGION_A)
    kinesis = boto3.client("kinesis", region_name=REGION_A)
    table = "bench-moto-costs"
    create_table(ddb, table, KEY_SCHEMA, stream=True)
    kinesis.create_stream(StreamName=table, ShardCount=1)
    rng = random.Random(5)
    stamp = {TS: {"N": "1"}, ORIGIN: {"S": REGION_A}}
    items = [{**realistic_body(rng), **key_of(i), **stamp} for i in range(100)]
    for i in range(0, 100, 25):
        ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": it}} for it in items[i : i + 25]]})
    names = {"#ts": TS}
    newer = itertools.count(10**13)

    def timed(call: Callable[[], Any], per: int = 1) -> float:
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            call()
            samples.append((time.perf_counter() - started) * 1000 / per)
        return round(statistics.median(samples), 3)

    def keys(n: int, missing: bool = False) -> list[dict[str, Any]]:
        return [key_of(i + (10**6 if missing else 0)) for i in range(n)]

    def put_conditional() -> None:
        ddb.put_item(
            TableName=table,
            Item={**items[0], TS: {"N": str(next(newer))}},
            ConditionExpression="attribute_not_exists(pk) OR #ts < :ts",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":ts": {"N": str(10**15)}},
        )

    def transact() -> None:
        ts = str(next(newer))
        actions: list[dict[str, Any]] = []
        for n, it in enumerate(items[:50]):
            check = {"TableName": table, "Key": key_of(10**6 + n), "ConditionExpression": "attribute_not_exists(pk)"}
            actions.append({"ConditionCheck": check})
            actions.append({"Put": {"TableName": table, "Item": {**it, TS: {"N": ts}}}})
        ddb.transact_write_items(TransactItems=actions)

    projected = {"ProjectionExpression": "pk, sk, #ts, #o", "ExpressionAttributeNames": {"#ts": TS, "#o": ORIGIN}}
    return {
        "request_overhead_list_tables": timed(lambda: ddb.list_tables()),
        "put_item_conditional_per_call": timed(put_conditional),
        "batch_write_item_per_item_of_25": timed(
            lambda: ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": it}} for it in items[:25]]}), 25
        ),
        "transact_write_items_per_action_of_100": timed(transact, 100),
        "batch_get_item_per_key_of_100_full_items": timed(
            lambda: ddb.batch_get_item(RequestItems={table: {"Keys": keys(100), "ConsistentRead": True}}), 100
        ),
        "batch_get_item_per_key_of_100_projected": timed(
            lambda: ddb.batch_get_item(RequestItems={table: {"Keys": keys(100), "ConsistentRead": True, **projected}}),
            100,
        ),
        "batch_get_item_per_key_of_100_missing": timed(
            lambda: ddb.batch_get_item(RequestItems={table: {"Keys": keys(100, True), "ConsistentRead": True}}), 100
        ),
        "put_records_per_record_of_100": timed(
            lambda: kinesis.put_records(
                StreamName=table, Records=[{"Data": b"x" * 900, "PartitionKey": str(i)} for i in range(100)]
            ),
            100,
        ),
    }


class Unmetered(Meter):
    """A meter that watches nothing: the timed pass carries no billing work in the functions' threads."""

    def watch_dynamodb(self, client: Any, role: str) -> None:
        """Nothing."""

    def watch_kinesis(self, client: Any, role: str) -> None:
        """Nothing."""


def _build(
    make: Callable[[str, Delivery, Meter], Design], prefix: str, hostile: bool = False, *, metered: bool = True
) -> tuple[Design, Meter]:
    """A design with its meter; hostile: PutRecords partial failures, late, duplicated and shuffled records.

    `metered`: bill every call, reading stored items' sizes from moto's memory (moto in this process);
    otherwise nothing is billed (the pass is timed, its units are not reported).
    """
    batch = 500 if make is sample else 1000  # the relay's stream batch: ours as the template, the sample's 500
    delivery = (
        Delivery(rng=random.Random(3), put_fail_rate=0.002, duplicate=0.03, delay=0.03, reorder=True, batch_size=batch)
        if hostile
        else Delivery(batch_size=batch)
    )
    meter = Meter(moto_sizer()) if metered else Unmetered()
    return make(f"{prefix}-{make.__name__}", delivery, meter), meter


def ratio(ours_value: float, sample_value: float) -> float | None:
    """Ours divided by the sample's (None when the sample's is 0: the sample reads nothing)."""
    return round(ours_value / sample_value, 3) if sample_value else None


def ratios(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float | None]:
    """One design's figures over the sample's."""
    per_ours, per_sample = mine["per_change"]["total"], theirs["per_change"]["total"]
    return {
        "changes_per_second": ratio(mine["changes_per_second"], theirs["changes_per_second"]),
        "function_changes_per_second": ratio(
            mine["function_changes_per_second"], theirs["function_changes_per_second"]
        ),
        "changes_per_second_moto_in_process": ratio(
            mine["moto_in_process"]["changes_per_second"], theirs["moto_in_process"]["changes_per_second"]
        ),
        "function_changes_per_second_moto_in_process": ratio(
            mine["moto_in_process"]["function_changes_per_second"],
            theirs["moto_in_process"]["function_changes_per_second"],
        ),
        **(
            {
                "changes_per_second_with_round_trip": ratio(
                    mine["with_round_trip"]["changes_per_second"], theirs["with_round_trip"]["changes_per_second"]
                ),
                "function_changes_per_second_with_round_trip": ratio(
                    mine["with_round_trip"]["function_changes_per_second"],
                    theirs["with_round_trip"]["function_changes_per_second"],
                ),
            }
            if "with_round_trip" in mine
            else {}
        ),
        "billed_write_units_per_change": ratio(per_ours["billed_write_units"], per_sample["billed_write_units"]),
        "billed_read_units_per_change": ratio(per_ours["billed_read_units"], per_sample["billed_read_units"]),
        "requests_per_change": ratio(per_ours["requests"], per_sample["requests"]),
        "kinesis_records_per_change": ratio(per_ours["kinesis_records"], per_sample["kinesis_records"]),
        "kinesis_put_payload_units_per_change": ratio(
            per_ours["kinesis_put_payload_units"], per_sample["kinesis_put_payload_units"]
        ),
        "border_bytes_per_change": ratio(per_ours["border_bytes"], per_sample["border_bytes"]),
    }


SPEED_FIELDS = ("changes_per_second", "function_changes_per_second", "replication_seconds", "ms_per_change")


def run(changes: int = CHANGES) -> dict[str, Any]:
    """Every design on the same workload twice (moto in its own process, then in this one), then under hostile delivery.

    The fair pass runs moto in its own process (moto's CPU is not the functions', as AWS's service is
    not): its speed and convergence are the headline. Another runs moto in this process, where the meter
    reads the sizes of stored items from moto's memory: the billed units come from it, and its speed shows
    what sharing the interpreter with the emulator imposes. With BENCH_RELAY_ROUND_TRIP_MS (default 3),
    a first pass holds every request that long in moto's process, as a network round trip would.
    """
    work = plan(changes)
    round_trip: dict[str, dict[str, Any]] = {}
    if ROUND_TRIP_MS > 0:
        with moto_server.running(own_process=True, round_trip_ms=ROUND_TRIP_MS) as aws:
            designs = [_build(m, "bench-relay-rtt", metered=False) for m in (ours, ours_bridge, sample)]
            round_trip = measure(designs, work, aws.pid)
    with moto_server.running(own_process=True) as aws:
        designs = [_build(m, "bench-relay", metered=False) for m in (ours, ours_bridge, sample)]
        fair = measure(designs, work, aws.pid)
        hostile_work = plan(HOSTILE_CHANGES, rounds=2, seed=12)
        hostile_designs = [_build(m, "bench-hostile", True, metered=False) for m in (ours, ours_bridge, sample)]
        hostile = {name: figures["convergence"] for name, figures in measure(hostile_designs, hostile_work).items()}
        costs_own = moto_costs()
    with moto_server.running(own_process=False):
        inline = measure([_build(m, "bench-relay-inline") for m in (ours, ours_bridge, sample)], work)
        costs = moto_costs()
    results: dict[str, Any] = {}
    for name, billed in inline.items():
        results[name] = {
            **{k: v for k, v in billed.items() if k not in SPEED_FIELDS and k != "convergence"},
            **{k: fair[name][k] for k in SPEED_FIELDS},
            "convergence": fair[name]["convergence"],
            "moto_in_process": {**{k: billed[k] for k in SPEED_FIELDS}, "convergence": billed["convergence"]},
        }
        if round_trip:
            results[name]["with_round_trip"] = {
                "round_trip_ms": ROUND_TRIP_MS,
                **{k: round_trip[name][k] for k in SPEED_FIELDS},
                "convergence": round_trip[name]["convergence"],
            }
    results["ratios"] = ratios(results["ours"], results["sample"])
    results["ratios_bridge"] = ratios(results["ours_bridge"], results["sample"])
    results["hostile_delivery_convergence"] = hostile
    results["moto_ms_per_request"] = {"moto_in_process": costs, "moto_own_process": costs_own}
    results["workload"] = {
        "writes": work.writes,
        "puts_new": work.count("put"),
        "updates": work.count("update"),
        "deletes": work.count("delete"),
        "conflicting_pairs": work.conflict_pairs,
        "same_millisecond_pairs": work.tie_pairs,
        "rounds": len(work.rounds),
        "regions": [REGION_A, REGION_B],
        "hostile_delivery_writes": hostile_work.writes,
    }
    results["how"] = (
        "per application write. Speed and convergence: moto in its own process (its CPU is not the functions', "
        "as on AWS), the functions and the event sources (the harness's Lambda pollers) in this one, warm; "
        "changes_per_second end to end (event sources included), function_changes_per_second inside the relay "
        "and applier handlers only; ms_per_change splits the time (moto_process_cpu: moto's own CPU). "
        "moto_in_process: the same workload with moto sharing this interpreter. with_round_trip: moto in its own "
        "process holding every request round_trip_ms first (a network round trip, overlapped by concurrent "
        "requests, no CPU), as AWS's latency. Units from harness/billing.py "
        "in the moto_in_process pass (its meter reads stored items' sizes from moto's memory; a cancelled "
        "transaction billed for its prepare phase; billed_write_units_range: cancellations free .. billed in full)"
    )
    return results


if __name__ == "__main__":
    import contextlib
    import json

    with contextlib.redirect_stdout(sys.stderr):  # the functions' cold-start metric lines go to stderr
        figures = run()
    print(json.dumps(figures, indent=2))
    converged = [figures["hostile_delivery_convergence"][name] for name in ("ours", "ours_bridge")]
    for name in ("ours", "ours_bridge"):
        converged.append(figures[name]["convergence"])
        converged += [
            figures[name][part]["convergence"]
            for part in ("moto_in_process", "with_round_trip")
            if part in figures[name]
        ]
    sys.exit(0 if all(c["mismatches"] == 0 for c in converged) else 1)
