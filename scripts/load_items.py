"""Load generator for bidirectional replication, in the style of the field's load_items.py.

    python scripts/load_items.py -n 1000 -r cn-north-1 -t orders -c 8
    python scripts/load_items.py -n 1000 -r cn-north-1 -t orders --peer-region ap-southeast-1 --conflicts 0.1

Writes `-n` items into the table of region `-r` with `-c` threads, then updates and deletes a share of
them (`--updates`, `--deletes`). With `--peer-region` (and `--peer-table`), a share of the keys
(`--conflicts`) is also written in the peer region at the same moment, half of them in the very same
millisecond: the conflicts last-writer-wins must settle. With application stamps every write is stamped
with `last_update_timestamp` and `last_updater_region` (the region tag), strictly increasing per item
per region: in integer milliseconds (`--stamp ms`, the default), or as the public China <-> Global
sample's load_items.py stamps, `Decimal(time.time())`: seconds with every fractional digit of the float
(`--stamp seconds`). With bridge-owned stamps the application writes no version at all (`--stamp
none`). Items carry every attribute type, binary nested too. Point it at moto with `--endpoint-url` (or
AWS_ENDPOINT_URL).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import boto3
from botocore.config import Config

TS_ATTR = "last_update_timestamp"
ORIGIN_ATTR = "last_updater_region"


STAMP_FORMS = ("ms", "seconds", "none")


class StampClock:
    """Version stamps of one region, strictly increasing per item: integer ms, or the sample's Decimal seconds."""

    def __init__(self, form: str = "ms") -> None:
        self.form = form
        self._last: dict[str, Decimal] = {}
        self._lock = threading.Lock()

    def _now(self, key: str) -> Decimal:
        if self.form == "seconds":
            now = Decimal(time.time())  # exactly what the sample writes: the float's full expansion
            step = Decimal("0.000001")  # the finest a stamp orders by (microseconds)
        else:
            now, step = Decimal(int(time.time() * 1000)), Decimal(1)
        last = self._last.get(key)
        return now if last is None or now >= last + step else last + step

    def peek(self, key: str) -> Decimal:
        """The ts the item's next write would get."""
        with self._lock:
            return self._now(key)

    def next(self, key: str, exactly: Decimal | None = None) -> Decimal:
        """The next ts for an item (`exactly`: a same-instant tie, never below what was stamped)."""
        with self._lock:
            ts = self._now(key) if exactly is None else exactly
            self._last[key] = max(self._last.get(key, ts), ts)
            return ts


@dataclass
class Region:
    """One side the generator writes to."""

    ddb: Any
    table: str
    tag: str
    clock: StampClock = field(default_factory=StampClock)

    @classmethod
    def stamping(cls, ddb: Any, table: str, tag: str, form: str) -> Region:
        """A region whose writers stamp in `form` (ms, or the sample's seconds)."""
        return cls(ddb, table, tag, StampClock(form))


@dataclass
class LoadStats:
    """What the generator wrote."""

    puts: int = 0
    updates: int = 0
    deletes: int = 0
    conflicts: int = 0
    ties: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        """Count writes (thread-safe)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def figures(self) -> dict[str, Any]:
        """The counts and the write rate."""
        writes = self.puts + self.updates + self.deletes + 2 * self.conflicts
        return {
            "puts": self.puts,
            "updates": self.updates,
            "deletes": self.deletes,
            "conflicts": self.conflicts,
            "same_millisecond_ties": self.ties,
            "writes": writes,
            "seconds": round(self.seconds, 2),
            "writes_per_second": round(writes / self.seconds, 1) if self.seconds else 0.0,
        }


def key_of(i: int) -> dict[str, Any]:
    """Item i's key: a string hash key and a number range key."""
    return {"pk": {"S": f"order#{i:07d}"}, "sk": {"N": str(i % 7)}}


def body_of(i: int, rng: random.Random, payload: int = 0) -> dict[str, Any]:
    """An item body of every attribute type, binary nested too (payload: extra bytes of text)."""
    body: dict[str, Any] = {
        "status": {"S": rng.choice(["NEW", "PAID", "SHIPPED", "已发货"])},
        "total": {"N": f"{rng.randint(1, 10**9)}.{rng.randint(10, 99)}"},
        "photo": {"B": rng.randbytes(24)},
        "tags": {"SS": sorted({f"t{rng.randint(0, 9)}" for _ in range(3)})},
        "address": {"M": {"city": {"S": rng.choice(["北京", "Singapore"])}, "geo": {"B": rng.randbytes(8)}}},
        "lines": {"L": [{"S": "sku-1"}, {"N": str(rng.randint(1, 5))}, {"BOOL": True}, {"NULL": True}]},
    }
    if payload:
        body["note"] = {"S": base64.b64encode(rng.randbytes(payload)).decode()[:payload]}
    return body


def _stamp(region: Region, key: dict[str, Any], ts: Decimal | None = None) -> dict[str, Any]:
    if region.clock.form == "none":
        return {}  # bridge-owned stamps: the application writes no version at all
    return {TS_ATTR: {"N": str(region.clock.next(clock_key(key), ts))}, ORIGIN_ATTR: {"S": region.tag}}


def clock_key(key: dict[str, Any]) -> str:
    """The name a clock knows an item by."""
    return json.dumps(key, sort_keys=True)


def put(region: Region, i: int, rng: random.Random, payload: int = 0, ts: Decimal | None = None) -> None:
    """Write item i (stamped)."""
    key = key_of(i)
    region.ddb.put_item(TableName=region.table, Item={**body_of(i, rng, payload), **key, **_stamp(region, key, ts)})


def update(region: Region, i: int, rng: random.Random) -> None:
    """Change two attributes of item i (stamped); creates it if it is gone."""
    key = key_of(i)
    stamp = _stamp(region, key)
    names = {"#s": "status", "#t": "total"}
    values = {":s": {"S": rng.choice(["PAID", "SHIPPED", "RETURNED"])}, ":t": {"N": str(rng.randint(1, 10**6))}}
    expression = "SET #s = :s, #t = :t"
    if stamp:
        names.update({"#ts": TS_ATTR, "#o": ORIGIN_ATTR})
        values.update({":ts": stamp[TS_ATTR], ":o": stamp[ORIGIN_ATTR]})
        expression += ", #ts = :ts, #o = :o"
    region.ddb.update_item(
        TableName=region.table,
        Key=key,
        UpdateExpression=expression,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )


def delete(region: Region, i: int) -> None:
    """Delete item i."""
    region.ddb.delete_item(TableName=region.table, Key=key_of(i))


def run_load(
    local: Region,
    *,
    items: int,
    concurrency: int = 8,
    updates: float = 0.3,
    deletes: float = 0.1,
    conflicts: float = 0.0,
    peer: Region | None = None,
    seed: int = 1,
    payload: int = 0,
    first: int = 0,
    progress: Callable[[str], None] | None = None,
) -> LoadStats:
    """Write the load; returns what was written. Item numbers are first .. first + items - 1."""
    stats = LoadStats()
    started = time.monotonic()
    ids = list(range(first, first + items))
    rng = random.Random(seed)
    plan: list[tuple[str, int]] = [("put", i) for i in ids]
    plan += [("update", rng.choice(ids)) for _ in range(int(items * updates))]
    plan += [("delete", i) for i in rng.sample(ids, int(items * deletes))]
    if peer is not None:
        plan += [("conflict", i) for i in rng.sample(ids, int(items * conflicts))]
    head, tail = plan[:items], plan[items:]
    rng.shuffle(tail)

    def one(step: tuple[str, int, int]) -> None:
        kind, i, n = step
        r = random.Random(seed * 1_000_003 + n)
        if kind == "put":
            put(local, i, r, payload)
            stats.add("puts")
        elif kind == "update":
            update(local, i, r)
            stats.add("updates")
        elif kind == "delete":
            delete(local, i)
            stats.add("deletes")
        else:
            assert peer is not None
            same_ms = r.random() < 0.5
            name = clock_key(key_of(i))
            ts = max(local.clock.peek(name), peer.clock.peek(name)) if same_ms else None
            with ThreadPoolExecutor(max_workers=2) as both:  # both regions at the same moment
                list(both.map(lambda region: put(region, i, r, payload, ts), (local, peer)))
            stats.add("conflicts")
            if same_ms:
                stats.add("ties")

    for phase, steps in (("writes", head), ("changes", tail)):
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for done, _ in enumerate(pool.map(one, [(k, i, n) for n, (k, i) in enumerate(steps)]), start=1):
                if progress and done % 500 == 0:
                    progress(f"{phase}: {done}/{len(steps)}")
    stats.seconds = time.monotonic() - started
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--items", type=int, default=1000, help="items to write (default 1000)")
    parser.add_argument("-r", "--region", required=True, help="region of the table, e.g. cn-north-1")
    parser.add_argument("-t", "--table", default="orders", help="table name (default orders)")
    parser.add_argument("-c", "--concurrency", type=int, default=8, help="writer threads (default 8)")
    parser.add_argument("--tag", help="origin tag to stamp (default: the region)")
    parser.add_argument("--updates", type=float, default=0.3, help="updates, as a share of -n (default 0.3)")
    parser.add_argument("--deletes", type=float, default=0.1, help="deletes, as a share of -n (default 0.1)")
    parser.add_argument("--peer-region", help="also write conflicting changes there (e.g. ap-southeast-1)")
    parser.add_argument("--peer-table", help="the peer's table (default: the same name)")
    parser.add_argument("--peer-tag", help="the peer's origin tag (default: the peer region)")
    parser.add_argument("--peer-profile", help="AWS profile for the peer (its partition needs its own keys)")
    parser.add_argument("--conflicts", type=float, default=0.1, help="conflicts, as a share of -n (default 0.1)")
    parser.add_argument("--payload", type=int, default=0, help="extra bytes of text per item (default 0)")
    parser.add_argument("--first", type=int, default=0, help="first item number (default 0)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--stamp",
        choices=STAMP_FORMS,
        default="ms",
        help="stamp form: ms, seconds as Decimal(time.time()), or none (bridge-owned stamps: write no version)",
    )
    parser.add_argument("--endpoint-url", help="e.g. a local moto server")
    args = parser.parse_args(argv)
    config = Config(retries={"mode": "adaptive", "max_attempts": 10}, max_pool_connections=args.concurrency + 4)
    local = Region.stamping(
        boto3.client("dynamodb", region_name=args.region, endpoint_url=args.endpoint_url, config=config),
        args.table,
        args.tag or args.region,
        args.stamp,
    )
    peer = None
    if args.peer_region:
        session = boto3.Session(profile_name=args.peer_profile) if args.peer_profile else boto3.Session()
        peer = Region.stamping(
            session.client("dynamodb", region_name=args.peer_region, endpoint_url=args.endpoint_url, config=config),
            args.peer_table or args.table,
            args.peer_tag or args.peer_region,
            args.stamp,
        )
    stats = run_load(
        local,
        items=args.items,
        concurrency=args.concurrency,
        updates=args.updates,
        deletes=args.deletes,
        conflicts=args.conflicts if peer else 0.0,
        peer=peer,
        seed=args.seed,
        payload=args.payload,
        first=args.first,
        progress=lambda line: print(line, flush=True),
    )
    print(json.dumps(stats.figures(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
