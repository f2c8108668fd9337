"""Verify throughput against the usual compare script, same data, same run, moto over HTTP.

The baseline is what a hand-written check usually does: one sequential Scan of the source, then one
GetItem per key on the target, comparing each pair (it finds missing and changed items, not extras).
Verify is statemachine/verify.asl.json as deployed: parallel-scan segments of both tables, 100 keys per
BatchGetItem, every difference read again (with `recheckDelaySeconds: 0` here: the delay is a fixed wait,
not work), the report written to S3. Both read a source table and a table in the target account (reached
by AssumeRole) that differ in a few injected keys; verify must find exactly those.

moto runs in a process of its own (`moto_server.start_process`), as for the backfill benchmark: on AWS the
service's CPU is not the caller's, and in one process the server and every "Lambda" share one interpreter
lock. That also lets the benchmark separate what moto imposes from what our code does: the CPU seconds of
the moto process (DynamoDB, S3 and Step Functions served by one Python core) against the CPU seconds of
this process (the verify functions' code and their botocore clients), beside each run's wall time.
`BENCH_VERIFY_MOTO=inline` measures with moto in this process. `run()` returns the figures; `make bench`
prints them, or run this file on its own.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "bridge"), str(ROOT)]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
logging.getLogger("werkzeug").setLevel(logging.ERROR)

import botocore.endpoint  # noqa: E402

from ddb_bridge.core.canonical import same_item  # noqa: E402
from ddb_bridge.core.capacity import item_read_units, read_units  # noqa: E402
from ddb_bridge.core.codec import item_size  # noqa: E402
from harness import moto_server  # noqa: E402
from harness.load_world import LoadWorld, TableShape, load_world  # noqa: E402
from harness.verify import create_verify_resources, progress_table, verify_machine  # noqa: E402
from harness.workflows import start as start_execution  # noqa: E402
from harness.workflows import wait as wait_execution  # noqa: E402
from harness.world import TARGET_REGION  # noqa: E402

ITEMS = int(os.environ.get("BENCH_VERIFY_ITEMS", "12000"))
SEGMENTS = [int(s) for s in os.environ.get("BENCH_VERIFY_SEGMENTS", "1,2,4,8").split(",")]
ROUNDS = int(os.environ.get("BENCH_VERIFY_ROUNDS", "2"))
BASELINE_SECONDS = float(os.environ.get("BENCH_VERIFY_BASELINE_SECONDS", "4"))
PAGE = int(os.environ.get("BENCH_VERIFY_PAGE", "1000"))  # the workflow's default
MISSING, CHANGED, EXTRA = (7, ITEMS // 3, ITEMS - 1), (42, ITEMS // 2, ITEMS - 2), (ITEMS + 1, ITEMS + 2, ITEMS + 3)


def order(i: int) -> dict[str, Any]:
    """A typical item: an order of ~150 bytes with strings, numbers, a set and a binary signature."""
    return {
        "pk": {"S": f"order#{i:07d}"},
        "customer": {"S": f"customer-{i % 977}"},
        "status": {"S": ("NEW", "PAID", "SHIPPED")[i % 3]},
        "total": {"N": f"{i * 7 % 10000}.{i % 100:02d}"},
        "lines": {"N": str(i % 9 + 1)},
        "tags": {"SS": ["web", f"batch-{i % 13}"]},
        "sig": {"B": (i * 2654435761 % 2**32).to_bytes(4, "big") * 4},
    }


# ---- what crosses the border -----------------------------------------------------------------------------------
class BorderMeter:
    """Counts DynamoDB requests to the target region and the bytes they move (both ways), in this process."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self._original = botocore.endpoint.Endpoint._send
        meter = self

        def send(endpoint: Any, request: Any) -> Any:
            response = meter._original(endpoint, request)
            auth = request.headers.get("Authorization", b"")
            auth = auth.decode() if isinstance(auth, bytes) else str(auth)
            if f"/{TARGET_REGION}/dynamodb/" in auth:
                with meter._lock:
                    meter.requests += 1
                    meter.bytes += len(request.body or b"") + len(response.content or b"")
            return response

        botocore.endpoint.Endpoint._send = send  # type: ignore[method-assign]

    def reading(self) -> tuple[int, int]:
        """(requests, bytes) so far."""
        with self._lock:
            return self.requests, self.bytes

    def close(self) -> None:
        """Put botocore back as it was."""
        botocore.endpoint.Endpoint._send = self._original  # type: ignore[method-assign]


def cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used so far; 0 when unknown."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the two ways to compare -----------------------------------------------------------------------------------
def baseline(world: LoadWorld) -> dict[str, Any]:
    """Sequential Scan -> GetItem per key on the target -> compare, for BASELINE_SECONDS."""
    target = world.target
    compared = differing = 0
    kwargs: dict[str, Any] = {"TableName": world.source_table, "Limit": 100}
    started = time.perf_counter()
    while time.perf_counter() - started < BASELINE_SECONDS:
        page = world.source.scan(**kwargs)
        for item in page["Items"]:
            other = target.get_item(TableName=world.target_table, Key={"pk": item["pk"]}).get("Item")
            differing += not same_item(item, other)
            compared += 1
            if time.perf_counter() - started >= BASELINE_SECONDS:
                break
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return {"items": compared, "seconds": time.perf_counter() - started, "differing": differing}


def bare_reads(world: LoadWorld, segments: int) -> int:
    """The reads verify makes, issued bare (sequential, no workflow, no compare): moto's part. Returns requests."""
    requests = 0
    for table, client, other_table, other, keys_only in (
        (world.source_table, world.source, world.target_table, world.target, False),
        (world.target_table, world.target, world.source_table, world.source, True),
    ):
        projection = {"ProjectionExpression": "#k", "ExpressionAttributeNames": {"#k": "pk"}} if keys_only else {}
        for segment in range(segments):
            kwargs: dict[str, Any] = {
                "TableName": table,
                "Limit": PAGE,
                "Segment": segment,
                "TotalSegments": segments,
                **projection,
            }
            while True:
                page = client.scan(**kwargs)
                keys = [{"pk": i["pk"]} for i in page["Items"]]
                for i in range(0, len(keys), 100):
                    request = {other_table: {"Keys": keys[i : i + 100], **projection}}
                    while request:
                        request = other.batch_get_item(RequestItems=request).get("UnprocessedKeys") or {}
                        requests += 1
                requests += 1
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return requests


def verify(world: LoadWorld, machine: str, segments: int) -> dict[str, Any]:
    """One verify execution; its figures, timed by the execution itself."""
    execution = start_execution(
        machine, {"segments": segments, "pageSize": PAGE, "recheckDelaySeconds": 0, "throughputPercent": 100}
    )
    result = wait_execution(execution, timeout_s=600, poll_s=0.5)
    if result["status"] != "SUCCEEDED":
        raise RuntimeError(f"verify {result['status']}: {result.get('cause')}")
    out = result["output"]
    scans = world.source.scan(TableName=progress_table(world), ConsistentRead=True)["Items"]
    mine = [s for s in scans if s["pk"]["S"].startswith(f"{out['verifyId']}#scan-")]
    return {
        "seconds": (result["stopDate"] - result["startDate"]).total_seconds(),
        "output": out,
        "readRequests": sum(int(s.get("readRequests", {"N": "0"})["N"]) for s in mine),
    }


def read_units_per_item(items: list[dict[str, Any]]) -> dict[str, float]:
    """Read units per source item, by DynamoDB's rules (eventually consistent reads, as both do)."""
    sizes = [item_size(i) for i in items]
    scan = sum(read_units(sizes[i : i + PAGE], False) for i in range(0, len(sizes), PAGE))
    small_scan = sum(read_units(sizes[i : i + 100], False) for i in range(0, len(sizes), 100))
    gets = item_read_units(sizes, False)
    return {
        "baseline": round((small_scan + gets) / len(items), 3),  # scan the source, get each key on the target
        "verify": round((2 * scan + 2 * gets) / len(items), 3),  # both passes: each table scanned and batch-read
    }


@contextmanager
def local_aws() -> Iterator[moto_server.LocalAws | None]:
    """Moto in a process of its own unless BENCH_VERIFY_MOTO=inline (then an inline server already running)."""
    inline = os.environ.get("BENCH_VERIFY_MOTO", "process") == "inline"
    if inline and "AWS_ENDPOINT_URL" in os.environ:
        yield None
        return
    with moto_server.running(own_process=not inline) as aws:
        yield aws


def run() -> dict[str, Any]:
    """Seed ITEMS items and a target with injected differences; time the baseline and verify; return the figures."""
    with local_aws() as aws:
        pid = aws.pid if aws is not None else None
        world = load_world(TableShape(stream_view=None, pitr=False))
        source = [order(i) for i in range(ITEMS)]
        world.seed(source)
        world.create_target_table()
        target = [it for i, it in enumerate(source) if i not in MISSING]
        target = [{**it, "status": {"S": "LOST"}} if int(it["pk"]["S"][6:]) in CHANGED else it for it in target]
        target += [order(i) for i in EXTRA]
        for i in range(0, len(target), 25):
            world.target.batch_write_item(
                RequestItems={world.target_table: [{"PutRequest": {"Item": it}} for it in target[i : i + 25]]}
            )
        create_verify_resources(world)
        machine = verify_machine(world, warm=2 * max(SEGMENTS))
        meter = BorderMeter()
        rounds: list[dict[str, Any]] = []
        try:
            for r in range(ROUNDS):
                before, moto_cpu, client_cpu = meter.reading(), cpu_seconds(pid), time.process_time()
                base = baseline(world)
                after, moto_cpu = meter.reading(), cpu_seconds(pid) - moto_cpu
                client_cpu = time.process_time() - client_cpu
                row: dict[str, Any] = {
                    "baseline_moto_cpu_ms_per_item": round(1000 * moto_cpu / max(1, base["items"]), 3) if pid else None,
                    "baseline_client_cpu_ms_per_item": round(1000 * client_cpu / max(1, base["items"]), 3),
                    "baseline_items_per_s": round(base["items"] / base["seconds"], 1),
                    "baseline_border_bytes_per_item": round((after[1] - before[1]) / max(1, base["items"]), 1),
                    "baseline_border_requests_per_item": round((after[0] - before[0]) / max(1, base["items"]), 3),
                    "verify": {},
                }
                for n in SEGMENTS:
                    floor_cpu, floor_wall = cpu_seconds(pid), time.perf_counter()
                    bare_requests = bare_reads(world, n)
                    floor_cpu, floor_wall = cpu_seconds(pid) - floor_cpu, time.perf_counter() - floor_wall
                    before, moto_cpu, our_cpu = meter.reading(), cpu_seconds(pid), time.process_time()
                    ours = verify(world, machine, n)
                    after, moto_cpu, our_cpu = (
                        meter.reading(),
                        cpu_seconds(pid) - moto_cpu,
                        time.process_time() - our_cpu,
                    )
                    out = ours["output"]
                    found = (out["missing"], out["different"], out["extra"], out["inFlight"])
                    row["verify"][n] = {
                        "items_per_s": round(ITEMS / ours["seconds"], 1),
                        "seconds": round(ours["seconds"], 2),
                        "ratio": round(ITEMS / ours["seconds"] / row["baseline_items_per_s"], 1),
                        "moto_cpu_s": round(moto_cpu, 2),
                        "our_cpu_s": round(our_cpu, 2),
                        "moto_busy": round(moto_cpu / ours["seconds"], 2) if pid else None,
                        "bare_reads_moto_cpu_s": round(floor_cpu, 2),
                        "bare_reads_seconds": round(floor_wall, 2),
                        "bare_reads_requests_per_item": round(bare_requests / ITEMS, 4),
                        "read_requests_per_item": round(ours["readRequests"] / ITEMS, 4),
                        "border_requests_per_item": round((after[0] - before[0]) / ITEMS, 4),
                        "border_bytes_per_item": round((after[1] - before[1]) / ITEMS, 1),
                        "found_exactly_the_injected": found == (len(MISSING), len(CHANGED), len(EXTRA), 0),
                    }
                    v = row["verify"][n]
                    print(
                        f"  round {r + 1}, {n} segment(s): verify {v['items_per_s']:.0f} items/s "
                        f"({v['seconds']:.1f} s), baseline {row['baseline_items_per_s']:.0f} items/s, "
                        f"{v['ratio']:.1f}x; "
                        f"CPU s: moto {v['moto_cpu_s']} (its reads alone, bare: {v['bare_reads_moto_cpu_s']}), "
                        f"ours {v['our_cpu_s']}; found the injected: "
                        f"{v['found_exactly_the_injected']}",
                        flush=True,
                    )
                rounds.append(row)
        finally:
            meter.close()
    per_segments = {
        n: {
            "items_per_s": statistics.median(r["verify"][n]["items_per_s"] for r in rounds),
            "ratio": statistics.median(r["verify"][n]["ratio"] for r in rounds),
            "ratio_range": [min(r["verify"][n]["ratio"] for r in rounds), max(r["verify"][n]["ratio"] for r in rounds)],
            "moto_busy": statistics.median(r["verify"][n]["moto_busy"] or 0 for r in rounds),
            "moto_cpu_s": statistics.median(r["verify"][n]["moto_cpu_s"] for r in rounds),
            "our_cpu_s": statistics.median(r["verify"][n]["our_cpu_s"] for r in rounds),
            "bare_reads_moto_cpu_s": statistics.median(r["verify"][n]["bare_reads_moto_cpu_s"] for r in rounds),
            "bare_reads_items_per_s": statistics.median(
                round(ITEMS / r["verify"][n]["bare_reads_seconds"], 1) for r in rounds
            ),
        }
        for n in SEGMENTS
    }
    last = rounds[-1]
    figures = {
        "items": ITEMS,
        "moto": os.environ.get("BENCH_VERIFY_MOTO", "process"),
        "load_average": os.getloadavg(),
        "page_size": PAGE,
        "rounds": rounds,
        "baseline_items_per_s": statistics.median(r["baseline_items_per_s"] for r in rounds),
        "segments": per_segments,
        "read_units_per_item": read_units_per_item(source),
        "cpu_ms_per_item": {
            "baseline": {
                "moto": statistics.median(r["baseline_moto_cpu_ms_per_item"] or 0 for r in rounds),
                "client": statistics.median(r["baseline_client_cpu_ms_per_item"] for r in rounds),
            },
            "verify": {
                n: {"moto": round(1000 * v["moto_cpu_s"] / ITEMS, 3), "ours": round(1000 * v["our_cpu_s"] / ITEMS, 3)}
                for n, v in per_segments.items()
            },
        },
        "moto_cpu_ms_per_item": {
            "baseline": statistics.median(r["baseline_moto_cpu_ms_per_item"] or 0 for r in rounds),
            "verify": {n: round(1000 * v["moto_cpu_s"] / ITEMS, 3) for n, v in per_segments.items()},
            "verify_reads_alone": {
                n: round(1000 * v["bare_reads_moto_cpu_s"] / ITEMS, 3) for n, v in per_segments.items()
            },
        },
        "per_item": {
            "baseline": {
                "read_requests": round(1 + 1 / 100, 3),
                "border_requests": last["baseline_border_requests_per_item"],
                "border_bytes": last["baseline_border_bytes_per_item"],
            },
            "verify": {
                "read_requests": last["verify"][SEGMENTS[-1]]["read_requests_per_item"],
                "border_requests": last["verify"][SEGMENTS[-1]]["border_requests_per_item"],
                "border_bytes": last["verify"][SEGMENTS[-1]]["border_bytes_per_item"],
            },
        },
        "found_exactly_the_injected": all(
            v["found_exactly_the_injected"] for r in rounds for v in r["verify"].values()
        ),
    }
    cpu = figures["cpu_ms_per_item"]
    base_cpu = cpu["baseline"]["moto"] + cpu["baseline"]["client"]
    figures["cpu_ratio"] = {n: round(base_cpu / (v["moto"] + v["ours"]), 1) for n, v in cpu["verify"].items()}
    print(
        "  CPU per item (both processes, less sensitive to the machine's load than wall time): "
        f"baseline {base_cpu:.2f} ms; verify "
        + ", ".join(f"{n} seg {v['moto'] + v['ours']:.2f} ms" for n, v in cpu["verify"].items())
        + f"; ratios {figures['cpu_ratio']}",
        flush=True,
    )
    print(
        "  median: baseline {:.0f} items/s; verify {}".format(
            figures["baseline_items_per_s"],
            ", ".join(f"{n} seg {s['items_per_s']:.0f} items/s = {s['ratio']:.1f}x" for n, s in per_segments.items()),
        ),
        flush=True,
    )
    return figures


if __name__ == "__main__":
    figures = run()
    print(json.dumps(figures, indent=2, default=str))
    sys.exit(0 if figures["found_exactly_the_injected"] else 1)
