"""Where the demo's bidirectional lag goes: the demo's live phase, timed at every hop.

Runs scripts/phase_bidirectional.py's live phase (both regions writing, 20% conflicts, replication
polled live as the demo does: each event source on its own thread at Lambda's rates) with timestamps on
every event-source poll, every function invocation and every request the functions send, then splits
each applied change's lag (stream record created -> applier done) into:

- stream wait: created -> the relay invocation that took it began (the event source's schedule);
- relay: that invocation's start -> the Kinesis record's arrival (the relay's work before PutRecords);
- Kinesis wait: arrival -> the applier invocation that took it began;
- applier: that invocation's start -> its end (when the applier reports the change applied).

and reports where the functions' time went (their requests to moto by operation, and their own
code), and how long each event source's poll took. Usage:

    python scripts/profile_lag.py [--items 500] [--out lag.json]
    py-spy record --threads --idle -f raw -o stacks.txt -- python scripts/profile_lag.py
    python scripts/profile_lag.py --stacks stacks.txt   # sums py-spy samples by where they were
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [p for p in (str(ROOT / "layers" / "bridge"), str(ROOT)) if p not in sys.path]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

from ddb_bridge.relay.packs import decode  # noqa: E402
from harness import moto_server  # noqa: E402
from harness.bidirectional import TwoRegions  # noqa: E402


def _phase() -> Any:
    spec = importlib.util.spec_from_file_location("phase_bidirectional", ROOT / "scripts" / "phase_bidirectional.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["phase_bidirectional"] = module
    spec.loader.exec_module(module)
    return module


class Timeline:
    """Everything timed during the run."""

    def __init__(self) -> None:
        self.relays: list[dict[str, Any]] = []
        self.appliers: list[dict[str, Any]] = []
        self.polls: dict[str, list[float]] = defaultdict(list)
        self.requests: dict[str, list[float]] = defaultdict(list)

    def timed_handler(self, handler: Any, kind: str, side: str) -> Any:
        """The handler, recording each invocation's start, end and records."""

        def run(event: dict[str, Any]) -> Any:
            started = time.time()
            try:
                return handler(event)
            finally:
                entry = {"side": side, "start": started, "end": time.time(), "records": event["Records"]}
                (self.relays if kind == "relay" else self.appliers).append(entry)

        return run

    def timed_poll(self, poller: Any, name: str) -> None:
        """Time every poll of an event source."""
        poll = poller.poll_once

        def run() -> int:
            started = time.perf_counter()
            try:
                return int(poll())
            finally:
                self.polls[name].append(time.perf_counter() - started)

        poller.poll_once = run

    def timed_client(self, client: Any, role: str) -> None:
        """Time every request a client sends, by operation."""
        events = client.meta.events

        def before(context: dict[str, Any], **_: Any) -> None:
            context["ddbb_started"] = time.perf_counter()

        def after(model: Any, context: dict[str, Any], **_: Any) -> None:
            started = context.get("ddbb_started")
            if started is not None:
                self.requests[f"{role}:{model.name}"].append(time.perf_counter() - started)

        events.register("before-call", before)
        events.register("after-call", after)


TIMELINE = Timeline()


class TimedTwoRegions(TwoRegions):
    """The demo's world, with every event source, invocation and function request timed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for side in self.sides:
            assert side.stream_poller and side.kinesis_poller and side.applier
            side.stream_poller.handler = TIMELINE.timed_handler(side.stream_poller.handler, "relay", side.name)
            side.kinesis_poller.handler = TIMELINE.timed_handler(side.kinesis_poller.handler, "applier", side.name)
            TIMELINE.timed_poll(side.stream_poller, f"stream {side.name}")
            TIMELINE.timed_poll(side.kinesis_poller, f"kinesis {side.name}")
            TIMELINE.timed_client(side.relay_runtime().local.dynamodb, "relay")
            TIMELINE.timed_client(
                side.applier.layer_module("ddb_bridge.relay.applier").runtime().local.dynamodb, "applier"
            )
            peer = side.relay_runtime().peer
            make = peer.client_factory

            def timed_factory(session: Any, region: str, config: Any, make: Any = make) -> Any:
                client = make(session, region, config)
                TIMELINE.timed_client(getattr(client, "_client", client), "relay")
                return client

            peer.client_factory = timed_factory


def _pct(values: list[float], q: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _summary(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    return {
        "p50": round(_pct(values, 50) * scale, 1),
        "p90": round(_pct(values, 90) * scale, 1),
        "p99": round(_pct(values, 99) * scale, 1),
        "mean": round(statistics.fmean(values) * scale, 1) if values else 0.0,
    }


def breakdown(timeline: Timeline) -> dict[str, Any]:
    """Each applied change's lag split into its hops, and where the functions' time went."""
    relay_of: dict[tuple[str, int], dict[str, Any]] = {}
    for invocation in timeline.relays:
        for record in invocation["records"]:
            body = record["dynamodb"]
            key = json.dumps(body["Keys"], sort_keys=True)
            relay_of[(key, int(float(body["ApproximateCreationDateTime"]) * 1000))] = invocation
    hops: dict[str, list[float]] = defaultdict(list)
    for invocation in timeline.appliers:
        for record in invocation["records"]:
            arrival = float(record["kinesis"]["approximateArrivalTimestamp"])
            for change in decode(base64.b64decode(record["kinesis"]["data"])).changes:
                created = change.approx_ms / 1000
                relay = relay_of.get((json.dumps(change.keys, sort_keys=True), change.approx_ms))
                if relay is None:
                    continue
                hops["total"].append(invocation["end"] - created)
                hops["stream_wait"].append(relay["start"] - created)
                hops["relay"].append(arrival - relay["start"])
                hops["kinesis_wait"].append(invocation["start"] - arrival)
                hops["applier"].append(invocation["end"] - invocation["start"])
    request_time = {name: round(sum(v), 2) for name, v in sorted(timeline.requests.items())}
    invocations = {
        "relay": {
            "count": len(timeline.relays),
            "seconds": round(sum(i["end"] - i["start"] for i in timeline.relays), 2),
        },
        "applier": {
            "count": len(timeline.appliers),
            "seconds": round(sum(i["end"] - i["start"] for i in timeline.appliers), 2),
        },
    }
    for role in ("relay", "applier"):
        in_requests = sum(v for k, v in request_time.items() if k.startswith(role + ":"))
        invocations[role]["seconds_in_requests"] = round(in_requests, 2)
        invocations[role]["records_per_invocation"] = round(
            statistics.fmean(
                [len(i["records"]) for i in (timeline.relays if role == "relay" else timeline.appliers)] or [0]
            ),
            1,
        )
    return {
        "changes_timed": len(hops["total"]),
        "lag_ms": {name: _summary(values) for name, values in hops.items()},
        "invocations": invocations,
        "request_seconds_by_operation": request_time,
        "request_ms_median": {
            name: round(statistics.median(v) * 1000, 2) for name, v in sorted(timeline.requests.items())
        },
        "requests": {name: len(v) for name, v in sorted(timeline.requests.items())},
        "poll_ms": {
            name: _summary(values) | {"count": len(values), "seconds": round(sum(values), 2)}
            for name, values in timeline.polls.items()
        },
    }


CATEGORIES = [  # (label, a frame that marks it), first match from the innermost frame outwards
    ("moto: DynamoDB transactions", "transact_write_items (moto/dynamodb"),
    ("moto: condition expressions", "moto/dynamodb/parsing"),
    ("moto: DynamoDB", "moto/dynamodb"),
    ("moto: DynamoDB Streams", "moto/dynamodbstreams"),
    ("moto: Kinesis", "moto/kinesis"),
    ("moto: serializer", "moto/core/serialize"),
    ("moto: request dispatch", "moto/core"),
    ("moto: HTTP server", "werkzeug"),
    ("moto: HTTP server", "socketserver"),
    ("relay: packing (json, zlib)", "ddb_bridge/relay/packs.py"),
    ("relay: deciding", "ddb_bridge/relay/stream_relay.py"),
    ("applier: deciding", "ddb_bridge/relay/applier.py"),
    ("applier: read-decide-write", "ddb_bridge/relay/apply.py"),
    ("batched reads and writes", "ddb_bridge/relay/local.py"),
    ("versions, digests", "ddb_bridge/relay/states.py"),
    ("codec", "ddb_bridge/core/codec.py"),
    ("sample model", "harness/sample_replication.py"),
    ("botocore/urllib3 (client side)", "botocore"),
    ("botocore/urllib3 (client side)", "urllib3"),
    ("harness: event sources", "harness/streams.py"),
    ("harness: event sources", "harness/kinesis.py"),
    ("load generator", "load_items.py"),
]
BLOCKING = (  # innermost frames that mean the thread is waiting, not running
    "readinto (socket.py",
    "recv_into",
    "accept (socket.py",
    "select (selectors.py",
    "poll (selectors.py",
    "wait (threading.py",
    "_wait_for_tstate_lock",
    "acquire",
    "sleep",
    "connect (socket.py",
    "_worker (concurrent/futures/thread.py",  # an idle pool thread waits in C under this frame
)


def stacks(path: Path) -> dict[str, Any]:
    """py-spy raw samples (--threads --idle) summed by thread kind, running or waiting, and where."""
    totals: Counter[tuple[str, str]] = Counter()
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if not frames:
            continue
        parts = frames.split(";")
        waiting = any(mark in parts[-1] for mark in BLOCKING) or parts[-1].startswith("thread (")
        where = next((label for frame in reversed(parts) for label, mark in CATEGORIES if mark in frame), "other")
        thread = (
            "moto server"
            if any("socketserver" in f for f in parts)
            else ("load generator" if any("load_items.py" in f for f in parts) else "functions + event sources")
        )
        totals[(thread, f"{'waiting' if waiting else 'running'}: {where}")] += int(count)
    out: dict[str, Any] = {}
    for kind in sorted({k for k, _ in totals}):
        mine = {where: n for (k, where), n in totals.items() if k == kind}
        samples = sum(mine.values()) or 1
        shares = {where: round(n / samples, 3) for where, n in sorted(mine.items(), key=lambda x: -x[1])}
        out[kind] = {"samples": samples, "share": {w: v for w, v in shares.items() if v >= 0.005}}
    return out


def main() -> int:
    """Run the live phase timed, or sum a py-spy file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=int(os.environ.get("DEMO_BIDI_ITEMS", "1000")))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--stacks", type=Path, help="a py-spy raw file to sum instead of running")
    args = parser.parse_args()
    if args.stacks:
        print(json.dumps(stacks(args.stacks), indent=2))
        return 0
    phase = _phase()
    phase.TwoRegions = TimedTwoRegions
    aws = moto_server.start()
    try:
        figures = phase.run_bidirectional(items=args.items, say=lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        aws.stop()
    out = {"demo_figures": figures, "breakdown": breakdown(TIMELINE)}
    text = json.dumps(out, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
