"""statemachine/verify.asl.json executed by moto's Step Functions engine, against moto over HTTP.

Verify finds every injected difference (missing, extra, a changed attribute, one changed binary byte, a
nested map change) and no false one (numbers spelled differently, sets in another order, attributes in
another order, an ignored attribute); live writes during the verify end as no real difference; repair
converges and never overwrites a newer write; cross-account and cross-partition; resume; bad input.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from ddb_bridge.core.canonical import canonical
from ddb_bridge.core.codec import encode_image
from ddb_bridge.core.keys import key_id
from ddb_bridge.verify.progress import read_progress
from harness import lambda_bridge
from harness.lambda_bridge import LambdaBridge
from harness.load_world import LoadWorld, TableShape, load_world
from harness.streams import StreamPoller
from harness.verify import create_verify_resources, progress_table, read_report, verify_machine
from harness.workflows import run, start, states_entered, wait
from harness.world import scan_all

SCHEMA = [("pk", "S"), ("sk", "N")]


@pytest.fixture
def bridge(aws: Any) -> Iterator[LambdaBridge]:
    bridge = lambda_bridge.install()
    yield bridge
    bridge.hooks.clear()


def key(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"user#{i % 7}"}, "sk": {"N": str(i)}}


def item(i: int, *, version: int | None = None, note: str = "seed") -> dict[str, Any]:
    out = {
        **key(i),
        "note": {"S": note},
        "price": {"N": "1.50"},
        "blob": {"B": bytes([i % 256]) * 8},
        "tags": {"SS": ["a", "b", f"t{i}"]},
        "nums": {"NS": ["2.50", "1", str(1000 + i)]},
        "nested": {"M": {"deep": {"M": {"b": {"B": b"\x00\xff"}, "n": {"N": "9" * 38}}}, "l": {"L": [{"S": "x"}]}}},
    }
    if version is not None:
        out["last_update_timestamp"] = {"N": str(version)}
        out["last_updater_region"] = {"S": "us-east-1"}
    return out


def respelled(source: dict[str, Any]) -> dict[str, Any]:
    """The same item as DynamoDB sees it, written differently: numbers, set order, attribute order."""
    out = dict(reversed(list(source.items())))
    out["price"] = {"N": "1.5"}
    out["tags"] = {"SS": list(reversed(source["tags"]["SS"]))}
    out["nums"] = {"NS": ["2.5", *reversed(source["nums"]["NS"][1:])]}
    return out


def kid(k: dict[str, Any]) -> str:
    return key_id(encode_image(k))


def put_all(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for i in range(0, len(items), 25):
        client.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": it}} for it in items[i : i + 25]]})


def verify_world(*, cross_partition: bool = False, stream: bool = False, billing: str = "PAY_PER_REQUEST") -> LoadWorld:
    view = "NEW_AND_OLD_IMAGES" if stream else None
    shape = TableShape(key_schema=SCHEMA, stream_view=view, pitr=False, billing=billing)
    world = load_world(shape, cross_partition=cross_partition)
    world.create_target_table()
    create_verify_resources(world)
    return world


def by_class(lines: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in lines:
        out.setdefault(line["class"], set()).add(kid(line["key"]))
    return out


# ---- what verify finds -------------------------------------------------------------------------------------
def inject_differences(world: LoadWorld, n: int) -> dict[str, set[str]]:
    """Source = n items; target = the same items spelled differently, with known differences; returns them."""
    source = [item(i) for i in range(n)]
    put_all(world.source, world.source_table, source)
    target = {kid(key(i)): respelled(it) for i, it in enumerate(source)}
    missing = {kid(key(i)) for i in (3, 17, 29)}
    for k in missing:
        del target[k]
    extra_items = [item(1000 + i) for i in range(2)]
    target.update({kid(key(1000 + i)): it for i, it in enumerate(extra_items)})
    changed = {kid(key(i)) for i in (5, 6, 7, 8)}
    target[kid(key(5))]["note"] = {"S": "changed"}
    target[kid(key(6))]["blob"] = {"B": bytes([6]) * 7 + bytes([7])}  # one byte of eight
    target[kid(key(7))]["nested"] = {
        "M": {"deep": {"M": {"b": {"B": b"\x00\xff"}, "n": {"N": "9" * 37 + "8"}}}, "l": {"L": [{"S": "x"}]}}
    }
    target[kid(key(8))]["tags"] = {"SS": ["a", "b"]}
    target[kid(key(9))]["audit"] = {"S": "only on the target, and ignored"}
    put_all(world.target, world.target_table, list(target.values()))
    return {"missing": missing, "extra": {kid(key(1000 + i)) for i in range(2)}, "different": changed}


def test_verify_finds_every_injected_difference_and_no_false_ones(bridge: LambdaBridge) -> None:
    # GIVEN a target that holds the source's items spelled differently (1.50 vs 1.5, sets and attributes in
    # another order), with 3 missing, 2 extra and 4 changed items (an attribute, one binary byte, a nested
    # number in a map, a set), and one item differing only in an ignored attribute
    world = verify_world()
    expected = inject_differences(world, 60)
    raw = world.target.get_item(TableName=world.target_table, Key=key(0))["Item"]
    source_raw = world.source.get_item(TableName=world.source_table, Key=key(0))["Item"]
    assert raw["price"] == {"N": "1.5"} and source_raw["price"] == {"N": "1.50"} and raw != source_raw
    machine = verify_machine(world)

    # WHEN verify runs
    result = run(
        machine,
        {"segments": 3, "pageSize": 10, "recheckDelaySeconds": 0, "ignoreAttributes": ["audit"], "sampleSize": 2},
        timeout_s=120,
    )

    # THEN it finds exactly the injected differences, and no other
    assert result["status"] == "SUCCEEDED", result.get("cause")
    out = result["output"]
    assert (out["missing"], out["extra"], out["different"], out["inFlight"]) == (3, 2, 4, 0)
    assert out["compared"] == 62 and out["equal"] == 62 - 9 and out["clean"] is False
    lines = read_report(world, out["report"])
    assert by_class(lines) == expected
    assert len(lines) == 9
    assert {kid(k) for k in out["samples"]["missing"]} <= expected["missing"] and len(out["samples"]["missing"]) == 2
    assert all(line["source"] is None for line in lines if line["class"] == "extra")
    assert all(line["target"] is None for line in lines if line["class"] == "missing")
    progress = read_progress(world.source, progress_table(world), result["output"]["verifyId"])
    assert progress.phase == "done" and progress.segments_done == progress.segments_total == 3
    assert (progress.compared, progress.missing, progress.extra, progress.different) == (62, 3, 2, 4)


def test_bidirectional_verify_never_compares_the_bridges_own_attribute(bridge: LambdaBridge) -> None:
    # GIVEN two regions whose items are equal but for the attribute the bidirectional bridge sets on the copies it
    # writes (its version and a digest), and one item that really differs
    world = verify_world()
    items = [item(i) for i in range(20)]
    put_all(world.source, world.source_table, items)
    copies = [{**it, "ddbb_v": {"S": f"{i:024x}:0.1796180270866000.{i}.ap-southeast-1"}} for i, it in enumerate(items)]
    copies[4]["note"] = {"S": "changed"}
    put_all(world.target, world.target_table, copies)

    # WHEN verify runs in bidirectional mode, and again in one-way mode
    bidirectional = run(verify_machine(world, VERIFY_MODE="bidirectional"), {"recheckDelaySeconds": 0}, timeout_s=120)
    one_way = run(verify_machine(world, VERIFY_MODE="ordered"), {"recheckDelaySeconds": 0}, timeout_s=120)

    # THEN bidirectional mode reports only the real difference; one-way mode (no bridge attribute) reports every copy
    assert bidirectional["status"] == "SUCCEEDED", bidirectional.get("cause")
    assert (bidirectional["output"]["different"], bidirectional["output"]["equal"]) == (1, 19)
    assert by_class(read_report(world, bidirectional["output"]["report"])) == {"different": {kid(key(4))}}
    assert one_way["status"] == "SUCCEEDED" and one_way["output"]["different"] == 20


def same_contents(world: LoadWorld, ignore: tuple[str, ...] = ()) -> bool:
    """The oracle: both tables hold the same items in canonical form (the ignored attributes left out)."""
    source = {k: canonical(v, ignore) for k, v in scan_all(world.source, world.source_table).items()}
    target = {k: canonical(v, ignore) for k, v in scan_all(world.target, world.target_table).items()}
    return source == target


# ---- live writes during the verify ---------------------------------------------------------------------------
class Replication:
    """table_replicator fed by the stream in a thread, a little behind the writes (as on AWS)."""

    def __init__(self, world: LoadWorld, mode: str, *, interval_s: float = 0.3) -> None:
        replicator = world.deploy_replicator(REPLICATION_MODE=mode)
        self.poller = StreamPoller(world.streams, world.stream_arn, replicator.invoke, batch_size=200)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self.poller.poll_once()
        except BaseException as exc:  # noqa: BLE001 - surfaced by drain()
            self.error = exc

    def drain(self) -> None:
        self._stop.set()
        self._thread.join(30)
        if self.error:
            raise self.error
        self.poller.drain()


class LiveWrites:
    """Updates, deletes and re-creates on the source, stamped with a version in lww mode."""

    def __init__(self, world: LoadWorld, keys: int, *, stamped: bool) -> None:
        self.world, self.keys, self.stamped = world, keys, stamped
        self.count = 0
        self._stop = threading.Event()
        self._rng = random.Random(11)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        source = boto3.client("dynamodb", region_name="us-east-1")
        while not self._stop.is_set():
            i = self._rng.randrange(self.keys + 10)
            version = int(time.time() * 1000) if self.stamped else None
            if self._rng.random() < 0.25:
                source.delete_item(TableName=self.world.source_table, Key=key(i))
            else:
                source.put_item(TableName=self.world.source_table, Item=item(i, version=version, note=f"live {i}"))
            self.count += 1
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.parametrize("mode", ["ordered", "lww"])
def test_live_writes_during_the_verify_are_never_reported_as_real_differences(bridge: LambdaBridge, mode: str) -> None:
    # GIVEN a target equal to the source, kept in sync by live replication a few hundred ms behind
    world = verify_world(stream=True)
    stamped = mode == "lww"
    seed = [item(i, version=1_000 + i if stamped else None) for i in range(120)]
    put_all(world.source, world.source_table, seed)
    put_all(world.target, world.target_table, seed)
    StreamPoller(world.streams, world.stream_arn, lambda event: {"batchItemFailures": []}).drain()
    replication = Replication(world, mode)
    machine = verify_machine(world, VERIFY_MODE=mode)

    # WHEN the source keeps changing during the whole verify
    writes = LiveWrites(world, 120, stamped=stamped)
    result = run(machine, {"segments": 2, "pageSize": 10, "recheckDelaySeconds": 2}, timeout_s=120)
    writes.stop()
    replication.drain()

    # THEN nothing is reported missing, extra or different; the writes show as settled or in flight
    assert result["status"] == "SUCCEEDED", result.get("cause")
    out = result["output"]
    assert (out["missing"], out["extra"], out["different"]) == (0, 0, 0), read_report(world, out["report"])
    assert out["clean"] is True
    assert out["settled"] + out["inFlight"] > 0  # the verify did see the writes, and rechecked them
    assert writes.count > 100
    assert same_contents(world)  # and replication really kept up


# ---- repair --------------------------------------------------------------------------------------------------
def test_repair_makes_the_target_equal_to_the_source(bridge: LambdaBridge) -> None:
    # GIVEN the injected differences of the first test
    world = verify_world()
    expected = inject_differences(world, 60)
    machine = verify_machine(world)

    # WHEN verify runs with repair
    result = run(machine, {"segments": 2, "recheckDelaySeconds": 0, "repair": True, "ignoreAttributes": ["audit"]})

    # THEN every real difference was repaired and the target equals the source (the ignored attribute aside)
    assert result["status"] == "SUCCEEDED", result.get("cause")
    out = result["output"]
    assert (out["missing"], out["extra"], out["different"], out["repaired"], out["unrepaired"]) == (3, 2, 4, 9, 0)
    assert "Repair the real differences" in states_entered(result["executionArn"])
    assert same_contents(world, ("audit",))
    assert {line["repair"] for line in read_report(world, out["report"])} == {"repaired"}
    assert sum(len(keys) for keys in expected.values()) == 9
    # AND a second verify finds the tables clean
    again = run(machine, {"segments": 2, "recheckDelaySeconds": 0, "ignoreAttributes": ["audit"]})
    assert again["output"]["clean"] is True and again["output"]["compared"] == 60


class RacingTarget:
    """Wraps the target client: just before the repair writes one key, another write reaches that key."""

    def __init__(self, client: Any, world: LoadWorld, racer: dict[str, Any]) -> None:
        self._client, self.world, self.racer = client, world, racer
        self.raced = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_item(self, **kwargs: Any) -> Any:
        if kid({n: kwargs["Item"][n] for n in ("pk", "sk")}) == kid({n: self.racer[n] for n in ("pk", "sk")}):
            self.world.target.put_item(TableName=self.world.target_table, Item=self.racer)  # lands first
            self.raced += 1
        return self._client.put_item(**kwargs)


@pytest.mark.parametrize("mode", ["ordered", "lww"])
def test_repair_never_overwrites_a_write_made_after_the_compare(bridge: LambdaBridge, mode: str) -> None:
    # GIVEN differences on keys 5 and 6 (and a missing key 3)
    world = verify_world()
    stamped = mode == "lww"
    old = int(time.time() * 1000) - 3_600_000  # an hour ago: long out of flight
    source = [item(i, version=old + i if stamped else None) for i in range(20)]
    put_all(world.source, world.source_table, source)
    put_all(world.target, world.target_table, [it for i, it in enumerate(source) if i != 3])
    for i in (5, 6):
        world.target.put_item(
            TableName=world.target_table, Item=item(i, version=old - 10 if stamped else None, note="stale")
        )
    now = int(time.time() * 1000)
    newer = {5: item(5, version=now, note="written after the compare"), 6: item(6, version=now, note="racing")}
    machine = verify_machine(world, VERIFY_MODE=mode)

    # WHEN a write reaches key 5 between the recheck and the repair, and one reaches key 6 between the repair's
    # read and its write
    def before_repair(event: dict[str, Any]) -> None:
        if event.get("action") == "repair":
            world.target.put_item(TableName=world.target_table, Item=newer[5])

    racing: list[RacingTarget] = []

    def configure(sandbox: Any) -> None:
        clients = sandbox.layer_module("ddb_bridge.verify.handler").runtime().clients
        make = clients.target.client

        def client(service: str, **kwargs: Any) -> Any:
            racing.append(RacingTarget(make(service, **kwargs), world, newer[6]))
            return racing[-1]

        clients.target.client = client

    bridge.hooks["verify"] = before_repair
    bridge.configure("verify", configure)
    result = run(machine, {"segments": 1, "recheckDelaySeconds": 0, "repair": True})

    # THEN both newer writes survive, key 3 is repaired, and the report says why 5 and 6 were left alone
    assert result["status"] == "SUCCEEDED", result.get("cause")
    out = result["output"]
    assert (out["missing"], out["different"], out["repaired"], out["unrepaired"]) == (1, 2, 1, 2)
    target = scan_all(world.target, world.target_table)
    assert target[kid(key(5))]["note"] == {"S": "written after the compare"}
    assert target[kid(key(6))]["note"] == {"S": "racing"}
    assert target[kid(key(3))] == world.source.get_item(TableName=world.source_table, Key=key(3))["Item"]
    assert sum(r.raced for r in racing) == 1
    outcomes = {kid(line["key"]): (line["repair"], line["repairWhy"]) for line in read_report(world, out["report"])}
    assert outcomes[kid(key(5))][0] == "targetChanged"
    assert outcomes[kid(key(6))] == (
        "unrepaired",
        "the target holds a version at least as new as the source's"
        if stamped
        else "a write reached the target between the read and the write",
    )


def test_lww_tells_changes_in_flight_from_real_differences(bridge: LambdaBridge) -> None:
    # GIVEN replication stopped: a fresh source change not yet on the target, an old one never replicated,
    # and a target item newer than its source item
    world = verify_world()
    now, old = int(time.time() * 1000), int(time.time() * 1000) - 3_600_000
    put_all(world.source, world.source_table, [item(i, version=old) for i in range(10)])
    put_all(world.target, world.target_table, [item(i, version=old) for i in range(10)])
    world.source.put_item(TableName=world.source_table, Item=item(1, version=now, note="fresh"))
    world.source.put_item(TableName=world.source_table, Item=item(2, version=old + 5, note="lost"))
    world.target.put_item(TableName=world.target_table, Item=item(3, version=old + 9, note="newer on the target"))
    machine = verify_machine(world, VERIFY_MODE="lww")

    # WHEN verify runs with repair
    result = run(machine, {"segments": 1, "recheckDelaySeconds": 0, "repair": True})

    # THEN the fresh change is in flight (not repaired), the lost one real and repaired, the newer target kept
    assert result["status"] == "SUCCEEDED", result.get("cause")
    out = result["output"]
    assert (out["inFlight"], out["different"], out["repaired"], out["unrepaired"], out["clean"]) == (1, 2, 1, 1, False)
    lines = {kid(line["key"]): line for line in read_report(world, out["report"])}
    assert lines[kid(key(1))]["class"] == "inFlight" and "repair" not in lines[kid(key(1))]
    assert lines[kid(key(2))]["repair"] == "repaired"
    assert lines[kid(key(3))]["why"] == "the target holds a newer version than the source"
    assert lines[kid(key(3))]["repair"] == "unrepaired"
    target = scan_all(world.target, world.target_table)
    assert target[kid(key(3))]["note"] == {"S": "newer on the target"}
    assert target[kid(key(2))]["note"] == {"S": "lost"} and target[kid(key(1))]["note"] == {"S": "seed"}


# ---- across accounts and partitions ------------------------------------------------------------------------
@pytest.mark.parametrize("cross_partition", [False, True], ids=["assumed-role", "peer-keys-aws-cn"])
def test_verify_and_repair_across_accounts_and_partitions(bridge: LambdaBridge, cross_partition: bool) -> None:
    world = verify_world(cross_partition=cross_partition)
    assert world.target_region == ("cn-north-1" if cross_partition else "eu-west-1")
    source = [item(i) for i in range(30)]
    put_all(world.source, world.source_table, source)
    put_all(world.target, world.target_table, [respelled(it) for it in source[2:]] + [item(99)])
    world.target.put_item(TableName=world.target_table, Item={**item(10), "note": {"S": "other"}})
    result = run(verify_machine(world), {"segments": 2, "recheckDelaySeconds": 0, "repair": True})
    assert result["status"] == "SUCCEEDED", result.get("cause")
    out = result["output"]
    assert (out["missing"], out["extra"], out["different"], out["repaired"]) == (2, 1, 1, 4)
    assert same_contents(world)


# ---- resume ------------------------------------------------------------------------------------------------
def test_a_stopped_verify_resumes_and_counts_every_key_once(bridge: LambdaBridge) -> None:
    # GIVEN 300 items, 4 missing on the target, and a verify slowed down so it can be stopped halfway: the source
    # has 50 provisioned read units, of which 10% (2.5 units a second for each of 2 segments) may be used
    world = verify_world(billing="PROVISIONED")
    source = [item(i) for i in range(300)]
    put_all(world.source, world.source_table, source)
    put_all(world.target, world.target_table, [it for i, it in enumerate(source) if i not in (10, 100, 200, 299)])
    machine = verify_machine(world)
    request = {
        "verifyId": "resume-me",
        "segments": 2,
        "pageSize": 10,
        "callSeconds": 1,
        "recheckDelaySeconds": 0,
        "throughputPercent": 10,
    }

    # WHEN the first execution is stopped while the source's segments are half compared
    first = start(machine, request)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        progress = read_progress(world.source, progress_table(world), "resume-me")
        if progress.compared >= 60:
            break
        time.sleep(0.05)
    boto3.client("stepfunctions").stop_execution(executionArn=first, cause="test: stop halfway")
    assert wait(first)["status"] == "ABORTED"
    bridge.wait_idle()
    halfway = read_progress(world.source, progress_table(world), "resume-me")
    assert halfway.phase == "source" and 0 < halfway.compared < 300 and halfway.segments_done < 2

    # AND a second execution with the same verifyId resumes from the checkpoints (at full speed)
    second = run(machine, {**request, "throughputPercent": 100}, timeout_s=120)

    # THEN every key was compared once and every difference reported once
    assert second["status"] == "SUCCEEDED", second.get("cause")
    out = second["output"]
    assert (out["compared"], out["missing"], out["equal"]) == (300, 4, 296)
    lines = read_report(world, out["report"])
    assert sorted(kid(line["key"]) for line in lines) == sorted(kid(key(i)) for i in (10, 100, 200, 299))
    assert out["startedAt"] < second["startDate"].timestamp() * 1000  # the verify started with the first run


# ---- bad input -----------------------------------------------------------------------------------------------
BAD: dict[str, tuple[dict[str, Any], dict[str, str], str]] = {
    "segments": ({"segments": 0}, {}, "segments must be from 1 to 1000"),
    "percent": ({"throughputPercent": 150}, {}, "throughputPercent must be from 1 to 100"),
    "delay": ({"recheckDelaySeconds": "soon"}, {}, "recheckDelaySeconds must be a whole number from 0 to 3600"),
    "typo": ({"pagesize": 10}, {}, "unknown field 'pagesize' (did you mean pageSize?)"),
    "verify id": ({"verifyId": "no spaces please"}, {}, "verifyId must be 1-80 of"),
    "repair": ({"repair": "yes"}, {}, "repair must be true or false"),
    "ignore list": ({"ignoreAttributes": "audit"}, {}, "ignoreAttributes must be a list"),
    "ignore a key": ({"ignoreAttributes": ["sk"]}, {}, "ignoreAttributes names key attributes ['sk']"),
    "sample": ({"sampleSize": 1000}, {}, "sampleSize must be from 0 to 100"),
    "no target": ({}, {"TARGET_TABLE_NAME": "missing-table"}, "the target table missing-table does not exist"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_input_fails_naming_the_field(bridge: LambdaBridge, case: str) -> None:
    execution_input, env, expected = BAD[case]
    world = verify_world()
    result = run(verify_machine(world, **env), execution_input)
    assert result["status"] == "FAILED"
    assert result["error"] == "Verify.InvalidInput"
    assert result["cause"].startswith("Invalid input: ") and expected in result["cause"], result["cause"]
    assert "Compare the source's segments" not in states_entered(result["executionArn"])


def test_a_segment_that_fails_for_good_fails_the_verify_with_its_cause(bridge: LambdaBridge) -> None:
    from ddb_bridge.core.errors import PermanentError

    world = verify_world()
    put_all(world.source, world.source_table, [item(i) for i in range(10)])

    def refuse(event: dict[str, Any]) -> None:
        if event.get("action") == "scan" and event.get("side") == "target":
            raise PermanentError("AccessDeniedException", "not authorized to perform: dynamodb:Scan (injected)")

    bridge.hooks["verify"] = refuse
    result = run(verify_machine(world), {"verifyId": "v1", "segments": 1, "recheckDelaySeconds": 0})
    assert result["status"] == "FAILED"
    assert bridge.errors["verify"] >= 1  # a permanent error is not retried
    assert states_entered(result["executionArn"])[-1] == "Verify failed"
    # (AWS fails the Map with the child's error; moto's Map goes on, and the report step names the segment)
    cause = result["cause"]
    assert "dynamodb:Scan (injected)" in cause or ("did not finish (['scan-target-0'])" in cause and "'v1'" in cause)
