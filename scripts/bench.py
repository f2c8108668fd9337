"""`make bench`: table_replicator against a naive baseline, same workload, same run, moto over HTTP.

Workload: 20,000 stream changes, 20% of them on 20 hot keys, 5% deletes, items of every type.
The baseline is what public samples do: one AssumeRole per invocation, then one put/delete per
record, in order, through the resource API (TypeDeserializer on Lambda's JSON).
Printed: changes/s, target write requests per change, bytes on the wire per change, handler cold
import time, and our/baseline ratios. Other benchmarks (backfill, relay) follow when present.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "bridge"), str(ROOT)]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
logging.getLogger("werkzeug").setLevel(logging.ERROR)

import boto3  # noqa: E402
from boto3.dynamodb.types import Binary, TypeDeserializer  # noqa: E402

from harness import moto_server  # noqa: E402
from harness.lambdas import LocalFunction  # noqa: E402
from harness.streams import StreamPoller  # noqa: E402
from harness.workload import every_type_item  # noqa: E402
from harness.world import (  # noqa: E402
    EXTERNAL_ID,
    TARGET_REGION,
    TARGET_ROLE_ARN,
    create_table,
    one_way_world,
    scan_all,
    target_session,
)

CHANGES = int(os.environ.get("BENCH_CHANGES", "20000"))
HOT_SHARE = 0.2
HOT_KEYS = 20
BATCH = 1000


class WireMeter:
    """Counts write requests and request bytes a client sends (botocore before-send hook)."""

    def __init__(self, client: Any) -> None:
        self.requests = 0
        self.bytes = 0
        client.meta.events.register("before-send.dynamodb.*", self)

    def __call__(self, request: Any, **_: Any) -> None:
        """Count one request, if it writes."""
        if request.headers.get("X-Amz-Target", b"").endswith((b"PutItem", b"DeleteItem", b"BatchWriteItem")):
            self.requests += 1
            self.bytes += len(request.body or b"")


def make_workload(world: Any) -> None:
    """Write the changes into the source, 25 distinct keys per BatchWriteItem, in order."""
    rng = random.Random(42)
    cold: list[str] = []
    pending: dict[str, dict[str, Any]] = {}

    def flush() -> None:
        if pending:
            left: dict[str, Any] = {world.source_table: list(pending.values())}
            while left:
                left = world.source.batch_write_item(RequestItems=left).get("UnprocessedItems") or {}
            pending.clear()

    for i in range(CHANGES):
        if rng.random() < HOT_SHARE:
            key = f"hot{rng.randrange(HOT_KEYS)}"
        elif cold and rng.random() < 0.06:
            key = cold.pop(rng.randrange(len(cold)))
            if key in pending:
                flush()
            pending[key] = {"DeleteRequest": {"Key": {"pk": {"S": key}}}}
            continue
        else:
            key = f"cold{i}"
            cold.append(key)
        if key in pending or len(pending) == 25:
            flush()
        item = every_type_item(i)
        item["pk"] = {"S": key}
        pending[key] = {"PutRequest": {"Item": item}}
        if len(pending) == 25:
            flush()
    flush()


def naive_handler(event: dict[str, Any], table_name: str) -> None:
    """The public sample: AssumeRole on every invocation, one write per record, in order."""
    creds = boto3.client("sts").assume_role(RoleArn=TARGET_ROLE_ARN, RoleSessionName="naive", ExternalId=EXTERNAL_ID)[
        "Credentials"
    ]
    session = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=TARGET_REGION,
    )
    table = session.resource("dynamodb").Table(table_name)
    NAIVE_METERS.append(WireMeter(table.meta.client))
    deserializer = NaiveDeserializer()
    for record in event["Records"]:
        body = record["dynamodb"]
        if record["eventName"] == "REMOVE":
            table.delete_item(Key={k: deserializer.deserialize(v) for k, v in body["Keys"].items()})
        else:
            table.put_item(Item={k: deserializer.deserialize(v) for k, v in body["NewImage"].items()})


NAIVE_METERS: list[WireMeter] = []


class NaiveDeserializer(TypeDeserializer):
    """What the public samples do with Lambda's base64 text: wrap the text itself (double-encoding)."""

    def _deserialize_b(self, value: Any) -> Binary:
        return Binary(value.encode() if isinstance(value, str) else value)

    def _deserialize_bs(self, value: Any) -> set[Binary]:
        return {self._deserialize_b(v) for v in value}


def import_time_ms(code: str, env: dict[str, str], runs: int = 5) -> float:
    """Median wall time of a fresh interpreter running `code` (an import), minus a bare interpreter."""

    def run(snippet: str) -> float:
        out = subprocess.run(
            [sys.executable, "-c", f"import time;t=time.perf_counter();{snippet};print(time.perf_counter()-t)"],
            env={**os.environ, **env, "PYTHONPATH": f"{ROOT / 'layers' / 'bridge'}"},
            capture_output=True,
            text=True,
            check=True,
        )
        return float(out.stdout.strip().splitlines()[-1]) * 1000

    return statistics.median(run(code) for _ in range(runs))


def bench_replicator() -> dict[str, Any]:
    """The table_replicator benchmark; returns its figures."""
    world = one_way_world(name="bench")
    print(f"workload: {CHANGES} changes ({HOT_SHARE:.0%} on {HOT_KEYS} hot keys), items of every type", flush=True)
    make_workload(world)
    fetcher = StreamPoller(world.streams, world.stream_arn, lambda e: None, batch_size=BATCH)
    events: list[dict[str, Any]] = []
    shard = fetcher._shards()[0]
    while batch := fetcher._fetch(shard):
        events.append({"Records": batch})
    changes = sum(len(e["Records"]) for e in events)
    print(f"stream: {changes} records in {len(events)} Lambda events of up to {BATCH}", flush=True)

    ours_table, naive_table = "bench-ours", "bench-naive"
    target = target_session().client("dynamodb")
    for name in (ours_table, naive_table):
        create_table(target, name, [("pk", "S")])

    fn = LocalFunction("table_replicator", world.replicator_env(TARGET_TABLE_NAME=ours_table))
    fn.invoke({"Records": []})  # the warm-up creates the (lazy) target client so it can be metered
    meter = WireMeter(fn.layer_module("ddb_bridge.core.clients").target_sessions.current().dynamodb)
    started = time.perf_counter()
    for event in events:
        assert fn.invoke(event) == {"batchItemFailures": []}
    ours_s = time.perf_counter() - started

    started = time.perf_counter()
    for event in events:
        naive_handler(event, naive_table)
    naive_s = time.perf_counter() - started

    source = scan_all(world.source, world.source_table)
    ours_ok = scan_all(target, ours_table) == source
    naive_items = scan_all(target, naive_table)
    naive_bad = sum(1 for k in source if naive_items.get(k) != source[k])

    env = world.replicator_env()
    ours_import = import_time_ms(
        "import importlib.util as u;s=u.spec_from_file_location('app','functions/table_replicator/app.py');"
        "m=u.module_from_spec(s);s.loader.exec_module(m)",
        env,
    )
    naive_import = import_time_ms(
        "import boto3;from boto3.dynamodb.types import TypeDeserializer;boto3.client('sts')", env
    )
    naive_requests = sum(m.requests for m in NAIVE_METERS)
    naive_bytes = sum(m.bytes for m in NAIVE_METERS)
    return {
        "changes": changes,
        "ours": {
            "changes_per_s": changes / ours_s,
            "writes_per_change": meter.requests / changes,
            "bytes_per_change": meter.bytes / changes,
            "import_ms": ours_import,
            "target_equals_source": ours_ok,
        },
        "naive": {
            "changes_per_s": changes / naive_s,
            "writes_per_change": naive_requests / changes,
            "bytes_per_change": naive_bytes / changes,
            "import_ms": naive_import,
            "items_wrong": naive_bad,
        },
    }


def print_replicator(fig: dict[str, Any]) -> None:
    """The replicator table with ratios."""
    ours, naive = fig["ours"], fig["naive"]
    print()
    print(f"table_replicator, {fig['changes']} changes (moto over HTTP, this machine)")
    print(f"  {'':28}{'ddb-bridge':>14}{'naive':>14}{'ratio':>10}")
    rows = [
        ("changes/s", "changes_per_s", "{:.0f}"),
        ("write requests per change", "writes_per_change", "{:.3f}"),
        ("bytes on the wire per change", "bytes_per_change", "{:.0f}"),
        ("handler cold import (ms)", "import_ms", "{:.0f}"),
    ]
    for label, key, fmt in rows:
        ratio = ours[key] / naive[key] if naive[key] else float("nan")
        print(f"  {label:28}{fmt.format(ours[key]):>14}{fmt.format(naive[key]):>14}{ratio:>9.2f}x")
    print(
        f"  target equals source: ddb-bridge {ours['target_equals_source']}, "
        f"naive baseline items wrong: {naive['items_wrong']} (binary double-encoded)"
    )


def other_benchmarks() -> dict[str, Any]:
    """The benchmarks other parts of the project ship (scripts/bench_*.py with run() -> dict)."""
    results: dict[str, Any] = {}
    for path in sorted((ROOT / "scripts").glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
        print(f"\n{path.stem}:", flush=True)
        results[path.stem] = module.run()
        print(json.dumps(results[path.stem], indent=2, default=str))
    return results


def main() -> int:
    """Run every benchmark on one moto server."""
    aws = moto_server.start()
    try:
        fig = bench_replicator()
        print_replicator(fig)
        aws.reset()
        others = other_benchmarks()
        for key, mode in (("ratios", "application stamps"), ("ratios_bridge", "bridge-owned stamps")):
            relay = others.get("bench_relay", {}).get(key)
            if relay:
                print(
                    f"\nbidirectional relay ({mode}), ddb-bridge / the sample's design (same run): "
                    f"changes/s {relay['changes_per_second']}x, "
                    f"billed write units per change {relay['billed_write_units_per_change']}x"
                )
        return 0 if fig["ours"]["target_equals_source"] else 1
    finally:
        aws.stop()


if __name__ == "__main__":
    sys.exit(main())
