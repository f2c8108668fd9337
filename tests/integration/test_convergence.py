"""Convergence under conflicts and faults: seeded random schedules, two regions, both stamp modes.

Each schedule (one seed) writes 1-3 items of its own, 3-8 times, from both regions, and between writes
random event sources take a step. With application stamps the writers stamp (puts, updates, deletes,
same-millisecond ties, two writers of one region whose older stamp lands last, clocks skewed by up to
40 ms so one region sometimes writes an item older than what it holds, updates that leave the stamp
alone). With bridge-owned stamps they stamp nothing (puts, updates, copies that carry the bridge's
attribute along, deletes, re-creations; nearly every write of a schedule falls in the same second in
both regions). Both modes also run a peer's delete between a local write and its relay.

Delivery and the functions are hostile, each fault drawn per schedule: PutRecords refusing part of each
call (the relay resends only those: reordering), Kinesis records late and twice, shuffled batches,
duplicated stream records, batch sizes of 1, 3 or 100 and stream batches cut at random sizes (a write and
the REMOVE after it in different invocations), side-table writes refused in bursts that outlast every
retry round (tombstones, echo markers, version records), invocations killed mid-way (before a request
or after its response), and writes whose response is lost after they happened (sent again).

After draining, both regions must hold exactly the oracle's items: for application stamps the
last-writer-wins oracle of the stamps written (`harness.lww.Oracle`); for bridge-owned stamps the
highest version the relays gave the changes they sent, after checking those versions against the
streams (`harness.lww.BridgeOracle`). A failing seed shows in the test id (`bridge-seed17`); replay it
with `pytest tests/integration/test_convergence.py -k bridge-seed17` (CONVERGENCE_SEEDS=n runs n per mode).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from typing import Any

import botocore.endpoint
import pytest

from harness.bidirectional import Delivery, TwoRegions
from harness.lww import BridgeOracle, Clock, Oracle, PlainWriter, Writer, canonical_item, random_body
from harness.moto_server import LocalAws
from harness.world import canonical_key

SEEDS = int(os.environ.get("CONVERGENCE_SEEDS", "200"))
SCHEMAS = [[("pk", "S")], [("pk", "S"), ("sk", "N")], [("pk", "B")], [("pk", "N"), ("sk", "B")]]
MODES = ("application", "bridge")


def key_for(schema: list[tuple[str, str]], seed: int, i: int) -> dict[str, Any]:
    """Item `i` of schedule `seed`: keys never repeat across schedules, which share the tables."""
    values = {
        "S": {"S": f"order#{seed}-{i}"},
        "N": {"N": str(1000 * seed + i)},
        "B": {"B": bytes([seed % 256, seed // 256, i, 0, 255 - i])},
    }
    key = {schema[0][0]: values[schema[0][1]]}
    if len(schema) > 1:
        name, kind = schema[1]
        key[name] = {"S": f"line#{i % 2}"} if kind == "S" else {"N": str(7 * i)} if kind == "N" else {"B": bytes([i])}
    return key


def schema_of(seed: int) -> list[tuple[str, str]]:
    """Runs of 25 seeds share a key schema, so the tables are re-created only when it changes."""
    return SCHEMAS[(seed // 25) % len(SCHEMAS)]


class _NoRetrySleep:
    """botocore's module `time`, without the waits between retries (the faults are injected, not real)."""

    def __getattr__(self, name: str) -> Any:
        import time

        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        return None


@pytest.fixture(scope="module")
def worlds(local_aws: LocalAws) -> Iterator[dict[str, TwoRegions]]:
    """One two-region world per stamp mode for the module (warm functions); schedules get fresh tables."""
    local_aws.reset()
    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)  # a log record per moto request slows a 400-schedule suite
    metrics_disabled = os.environ.get("POWERTOOLS_METRICS_DISABLED")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"  # metrics are asserted elsewhere; here they are noise
    saved_time = botocore.endpoint.time
    botocore.endpoint.time = _NoRetrySleep()  # type: ignore[assignment]
    yield {mode: TwoRegions(name=f"convergence-{mode[:3]}", tombstone_ttl=False, stamp_mode=mode) for mode in MODES}
    botocore.endpoint.time = saved_time
    werkzeug.setLevel(level)
    if metrics_disabled is None:
        os.environ.pop("POWERTOOLS_METRICS_DISABLED", None)
    else:
        os.environ["POWERTOOLS_METRICS_DISABLED"] = metrics_disabled


def delivery_for(rng: random.Random, seed: int) -> Delivery:
    """This schedule's faults (every knob drawn from the seed)."""
    return Delivery(
        rng=random.Random(seed * 7919),
        put_fail_rate=rng.choice([0.0, 0.3, 0.5]),
        duplicate=rng.choice([0.0, 0.3]),
        delay=rng.choice([0.0, 0.3]),
        reorder=rng.random() < 0.5,
        stream_duplicate=rng.choice([0.0, 0.2]),
        batch_size=rng.choice([1, 3, 100]),
        random_batches=rng.random() < 0.5,
        side_bursts=rng.choice([0.0, 0.0, 0.3]),
        kill=rng.choice([0.0, 0.0, 0.04]),
        lost=rng.choice([0.0, 0.0, 0.1]),
        max_retries=1000,
    )


def _pump(world: TwoRegions, rng: random.Random) -> None:
    for _ in range(rng.randint(0, 2)):
        world.pump(rng)


def _race_delete(world: TwoRegions, side: Any, key: dict[str, Any], write: Any, delete: Any) -> None:
    """A local write, then the peer's delete of the same item applied here before this region's relay ran."""
    peer = world.peer_of(side)
    write()
    delete()
    assert peer.stream_poller is not None and side.kinesis_poller is not None
    peer.stream_poller.poll_once()  # the peer's relay sends its delete
    side.kinesis_poller.poll_once()  # this region's applier takes it: the local write is not relayed yet


def run_application(world: TwoRegions, seed: int, rng: random.Random, keys: list[dict[str, Any]]) -> dict[str, Any]:
    oracle = Oracle()
    writers = {
        side.name: Writer(side.ddb, side.table, side.tag, oracle, clock=Clock(skew_ms=rng.randint(-40, 40)))
        for side in world.sides
    }
    log: list[str] = []
    for _ in range(rng.randint(3, 8)):
        side = rng.choice(world.sides)
        writer = writers[side.name]
        key = rng.choice(keys)
        kind = rng.choices(
            ["put", "update", "delete", "tie", "race", "untouched", "race-delete"], weights=[28, 18, 22, 12, 8, 6, 6]
        )[0]
        if kind == "put":
            log.append(f"{side.name} put {key} -> {writer.put(key, random_body(rng))}")
        elif kind == "update":
            log.append(f"{side.name} update {key} -> {writer.update(key, {'status': {'S': f'u{rng.randint(0, 99)}'}})}")
        elif kind == "delete":
            log.append(f"{side.name} delete {key} -> {writer.delete(key)}")
        elif kind == "race":  # two writers of one region: the older stamp lands last (it must lose)
            canon = canonical_key(key)
            older, newer = writer.clock.next(canon), writer.clock.next(canon)
            log.append(f"{side.name} race {key} -> {writer.put(key, random_body(rng), ts=newer)}")
            log.append(f"{side.name} race {key} -> {writer.put(key, random_body(rng), ts=older)}")
        elif kind == "untouched":  # an update that leaves the stamp alone: it cannot win, it is put back
            done = writer.update_unstamped(key, {"status": {"S": f"untouched{rng.randint(0, 99)}"}})
            log.append(f"{side.name} untouched update {key} -> {done}")
        elif kind == "race-delete":
            peer_writer = writers[world.peer_of(side).name]
            _race_delete(
                world,
                side,
                key,
                lambda w=writer, k=key, n=side.name: log.append(f"{n} put {k} -> {w.put(k, random_body(rng))}"),
                lambda w=peer_writer, k=key: log.append(f"peer delete {k} -> {w.delete(k)}"),
            )
        else:  # the same millisecond in both regions: the origin breaks the tie
            ts = max(w.clock.next(canonical_key(key)) for w in writers.values())
            for name, tie_writer in writers.items():
                log.append(f"{name} tie {key} -> {tie_writer.put(key, random_body(rng), ts=ts)}")
        _pump(world, rng)
    world.drain(max_polls=4000)
    return {"expected": oracle.expected(), "log": log}


def run_bridge(world: TwoRegions, seed: int, rng: random.Random, keys: list[dict[str, Any]]) -> dict[str, Any]:
    writers = {side.name: PlainWriter(side.ddb, side.table, rng) for side in world.sides}
    log: list[str] = []
    for _ in range(rng.randint(3, 8)):
        side = rng.choice(world.sides)
        writer = writers[side.name]
        key = rng.choice(keys)
        kind = rng.choices(
            ["put", "update", "copy", "delete", "recreate", "race-delete"], weights=[30, 20, 12, 20, 8, 10]
        )[0]
        log.append(f"{side.name} {kind} {key}")
        if kind == "put":
            writer.put(key, random_body(rng))
        elif kind == "update":  # UpdateItem keeps the bridge's attribute as it was: a local write all the same
            writer.update(key, {"status": {"S": f"u{rng.randint(0, 99)}"}})
        elif kind == "copy":  # read, change, put back with every attribute (the bridge's too)
            writer.copy(key, {"status": {"S": f"c{rng.randint(0, 99)}"}})
        elif kind == "delete":
            writer.delete(key)
        elif kind == "recreate":
            writer.delete(key)
            writer.put(key, random_body(rng))
        else:
            peer_writer = writers[world.peer_of(side).name]
            _race_delete(
                world,
                side,
                key,
                lambda w=writer, k=key: w.update(k, {"status": {"S": "raced"}}),
                lambda w=peer_writer, k=key: w.delete(k),
            )
        _pump(world, rng)
    world.drain(max_polls=4000)
    expected = BridgeOracle().expected(list(world.sides), [canonical_key(k) for k in keys], writers)
    return {"expected": expected, "log": log}


def run_schedule(worlds: dict[str, TwoRegions], mode: str, seed: int) -> dict[str, Any]:
    world = worlds[mode]
    rng = random.Random(seed)
    schema = schema_of(seed)
    world.configure(delivery_for(rng, seed))
    if world.key_schema != schema:
        world.reset_tables(schema)
    keys = [key_for(schema, seed, i) for i in range(rng.randint(1, 3))]
    try:
        result = (run_application if mode == "application" else run_bridge)(world, seed, rng, keys)
    except BaseException:
        world.reset_tables(schema)  # whatever is left in flight must not spill into the next schedule
        raise
    data = {side.name: {k: canonical_item(v) for k, v in side.get_data(keys).items()} for side in world.sides}
    return {**result, "a": data["a"], "b": data["b"], "faults": dict(world.chaos.injected)}


@pytest.mark.parametrize(("mode", "seed"), [pytest.param(m, s, id=f"{m}-seed{s}") for m in MODES for s in range(SEEDS)])
def test_random_schedule_converges_to_the_lww_oracle(worlds: dict[str, TwoRegions], mode: str, seed: int) -> None:
    # GIVEN two regions, hostile delivery and functions, and a random schedule of conflicting writes (seeded)
    # WHEN every write has been made and replication has drained
    result = run_schedule(worlds, mode, seed)
    # THEN both tables equal each other and the last-writer-wins oracle, item for item
    replay = f"replay: pytest tests/integration/test_convergence.py -k '{mode}-seed{seed}'\n" + "\n".join(result["log"])
    assert result["a"] == result["b"], f"regions diverge ({mode}, seed {seed})\n{replay}"
    assert result["a"] == result["expected"], f"regions differ from the LWW oracle ({mode}, seed {seed})\n{replay}"
