"""Each fault class of the convergence suite, on its own, against the fix and against a naive variant.

For every class of fault the random schedules draw (tests/integration/test_convergence.py), one short
deterministic scenario runs twice: with the write path as it is, where both regions must end equal to the
last-writer-wins outcome, and with the one rule that defends against that fault replaced by the naive one
(a test-side patch of that function's own copy of the layer), where they must not. So the suite cannot
pass vacuously: each fault it injects is shown able to break a design that lacks the defence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from harness.bidirectional import TwoRegions
from harness.chaos import Killed
from harness.kinesis import kinesis_lambda_record
from harness.lww import (
    AHEAD_MS,
    BridgeOracle,
    Clock,
    Oracle,
    PlainWriter,
    VersionsDisagree,
    Writer,
    canonical_item,
    crossed,
)
from harness.world import canonical_key

KEY = {"pk": {"S": "order#1"}}
K = canonical_key(KEY)
FIXED = pytest.param(False, id="fixed")
NAIVE = pytest.param(True, id="naive")


def converged(world: TwoRegions, writers: dict[str, PlainWriter]) -> bool:
    """Both regions equal to the bridge oracle (which also refuses versions that break their promises)."""
    try:
        expected = BridgeOracle(check_seconds=not getattr(world, "fixed_second", False)).expected(
            list(world.sides), None, writers
        )
    except VersionsDisagree:
        return False
    return data(world.a) == data(world.b) == expected


def layer(side: Any, function: str, module: str) -> Any:
    """That function's own copy of a layer module in one region."""
    fn = side.relay if function == "relay" else side.applier
    return fn.layer_module(f"ddb_bridge.relay.{module}")


def data(side: Any) -> dict[str, Any]:
    return {k: canonical_item(v) for k, v in side.data().items()}


def same_second(world: TwoRegions, second: float = 1_796_000_000.0) -> None:
    """Every stream record of both regions created in one second (a test cannot wait for the clock)."""
    world.fixed_second = True  # type: ignore[attr-defined]
    for side in world.sides:
        poller = side.stream_poller
        assert poller is not None
        before = poller.transform

        def at(records: list[dict[str, Any]], before: Any = before) -> list[dict[str, Any]]:
            for record in records:
                record["dynamodb"]["ApproximateCreationDateTime"] = second
            return before(records) if before else records

        poller.transform = at


def kinesis_records(side: Any) -> list[dict[str, Any]]:
    """Every record of a region's relay stream, as Lambda would deliver it."""
    out = []
    for shard in side.kinesis.list_shards(StreamName=side.kinesis_stream)["Shards"]:
        it = side.kinesis.get_shard_iterator(
            StreamName=side.kinesis_stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for raw in side.kinesis.get_records(ShardIterator=it, Limit=10000)["Records"]:
            out.append(kinesis_lambda_record(raw, shard["ShardId"], "arn:aws:kinesis:x:1:stream/x", side.region))
    return out


@pytest.fixture
def bridge(aws: Any) -> Iterator[TwoRegions]:
    yield TwoRegions(stamp_mode="bridge")


@pytest.fixture
def application(aws: Any) -> Iterator[TwoRegions]:
    yield TwoRegions(stamp_mode="application")


# -- tombstone and marker writes refused in every retry round ---------------------------------------------
def naive_delete_then_remember(apply: Any) -> Callable[..., Any]:
    """The old order: remove the item, then try to remember the delete; a failed record is not a failed delete."""

    def _delete(self: Any, deletes: list[tuple[Any, Any]], results: dict[str, Any]) -> list[Any]:
        for change, read in deletes:
            if read.item is not None:
                self.store.client.delete_item(TableName=self.store.table, Key=change.key)
            record = read.peer.deleting(change.version, self.stamps.visible(read.item, read.local))
            item = record.item(change.key_id, self.store.side.ttl_seconds)
            self.store.write([apply.Write(self.store.side.table, {"PutRequest": {"Item": item}}, change.key_id)])
            results[change.key_id] = apply.Outcome.APPLIED  # acknowledged whatever the tombstone write did
        return []

    return _delete


@pytest.mark.parametrize("naive", [FIXED, NAIVE])
def test_tombstone_writes_refused_in_every_round_never_let_a_late_put_resurrect(
    bridge: TwoRegions, naive: bool
) -> None:
    world = bridge
    apply = layer(world.b, "applier", "apply")
    if naive:
        apply.Applier._delete = naive_delete_then_remember(apply)
    rng = __import__("random").Random(1)
    a, b = PlainWriter(world.a.ddb, world.a.table, rng), PlainWriter(world.b.ddb, world.b.table, rng)
    a.put(KEY, {"v": {"S": "one"}})
    world.drain()
    late_put = kinesis_records(world.b)  # Beijing's put as Singapore's applier got it: delivered again later
    # WHEN Beijing deletes the item and Singapore's side-table writes fail in every round of that invocation
    a.delete(KEY)
    world.a.stream_poller.poll_once()
    world.chaos._burst_left = 12  # 8 rounds of the first invocation, 4 of Lambda's retry
    world.b.kinesis_poller.poll_once()
    # AND the old put is delivered once more (a producer retry, a Lambda redelivery)
    world.b.applier.invoke({"Records": late_put})
    world.drain()
    # THEN the delete holds in both regions; the naive order acknowledged a delete it never remembered (the
    # old put came back, and the REMOVE it could not name crossed back as a delete of Singapore's own)
    assert converged(world, {"a": a, "b": b}) is not naive
    assert naive or data(world.a) == data(world.b) == {}


# -- a local write lost to what the region held, removed by a delete before the relay saw it ------------
def naive_no_repair_after_a_delete(stream_relay: Any) -> Callable[..., Any]:
    plan = stream_relay._Walker._plan

    def _plan(self: Any, kid: str, key: Any, candidates: Any, newest: Any, final: Any, *args: Any) -> Any:
        result = plan(self, kid, key, candidates, newest, final, *args)
        if final is None and result.repair is not None and not result.repair[0].deleted:
            result.repair = None  # the old rule: an item that ended deleted had nothing to put back
        return result

    return _plan


def naive_give_up_when_the_item_changed(stream_relay: Any) -> Callable[..., Any]:
    """A repair whose guard fails is dropped: "the item changed, its own record will be judged"."""
    put_back = stream_relay._LocalWrites._put_back

    def _put_back(self: Any, kid: str, target: Any, final: Any, plans: Any) -> Any:
        conditional = self.store.conditional

        def once(*args: Any, **kwargs: Any) -> Any:
            result = conditional(*args, **kwargs)
            return True if result is False else result  # a failed guard counts as done

        self.store.conditional = once
        try:
            return put_back(self, kid, target, final, plans)
        finally:
            self.store.conditional = conditional

    return _put_back


@pytest.mark.parametrize("batch", [100, 1], ids=["one-batch", "record-by-record"])
@pytest.mark.parametrize("naive", [FIXED, NAIVE])
def test_a_lost_local_write_is_put_back_even_when_a_replicated_delete_removed_it(
    application: TwoRegions, naive: bool, batch: int
) -> None:
    world = application
    relay = layer(world.a, "relay", "stream_relay")
    if naive:
        if batch == 1:
            relay._LocalWrites._put_back = naive_give_up_when_the_item_changed(relay)
        relay._Walker._plan = naive_no_repair_after_a_delete(relay)
    oracle = Oracle()
    a = Writer(world.a.ddb, world.a.table, world.a.tag, oracle, clock=Clock())
    b = Writer(world.b.ddb, world.b.table, world.b.tag, oracle, clock=Clock())
    start = a.clock.next(K)
    a.put(KEY, {"v": {"S": "S"}}, ts=start)
    world.drain()
    # WHEN Beijing writes N, then a writer whose clock lags writes c (older than S), and Singapore, which has
    # not seen N, deletes S: its delete (S + 1 µs) reaches Beijing before Beijing's relay ran
    a.put(KEY, {"v": {"S": "N"}}, ts=start + 50)
    a.put(KEY, {"v": {"S": "c"}}, ts=start - 10)
    b.delete(KEY)
    world.b.stream_poller.poll_once()
    world.a.kinesis_poller.poll_once()  # the delete removes c (older than it): N is not in the table any more
    world.a.stream_poller.batch_size = batch
    world.drain()
    # THEN N, the newest version, wins in both regions; the naive relay left Beijing without the item
    expected = oracle.expected()
    assert expected == {K: canonical_item({**KEY, "v": {"S": "N"}, **stamp(start + 50, world.a.tag)})}
    assert (data(world.a) == expected == data(world.b)) is not naive


def stamp(ts: int, tag: str) -> dict[str, Any]:
    return {"last_update_timestamp": {"N": str(ts)}, "last_updater_region": {"S": tag}}


# -- writes without a stamp in both regions: updates that keep the bridge's attribute, local deletes ---------
def naive_trust_the_attribute(states: Any) -> Callable[..., Any]:
    def written_by_bridge(self: Any, new: Any, old: Any) -> Any:
        raw = (new or {}).get(self.bridge_attr, {}).get("S", "")
        return states.decode_version(raw.partition(":")[2]) if raw else None  # no digest, no OldImage compared

    return written_by_bridge


def naive_echo_by_what_was_removed(stream_relay: Any) -> Callable[..., Any]:
    is_echo = stream_relay._Walker._is_echo

    def _is_echo(self: Any, old: Any, removed: Any, local: Any, peer: Any, consumed: Any, seq: Any) -> Any:
        if self.stamps.marked(old) is not None:
            return True, None  # "replication wrote what was removed, so replication removed it"
        return is_echo(self, old, removed, local, peer, consumed, seq)

    return _is_echo


@pytest.mark.parametrize("write", ["update", "delete"])
@pytest.mark.parametrize("naive", [FIXED, NAIVE])
def test_a_local_write_on_a_replicated_item_replicates(bridge: TwoRegions, naive: bool, write: str) -> None:
    world = bridge
    if naive:
        if write == "update":
            layer(world.b, "relay", "states").Versions.written_by_bridge = naive_trust_the_attribute(
                layer(world.b, "relay", "states")
            )
        else:
            relay = layer(world.b, "relay", "stream_relay")
            relay._Walker._is_echo = naive_echo_by_what_was_removed(relay)
    rng = __import__("random").Random(2)
    a, b = PlainWriter(world.a.ddb, world.a.table, rng), PlainWriter(world.b.ddb, world.b.table, rng)
    a.put(KEY, {"v": {"S": "from Beijing"}})
    world.drain()
    # WHEN Singapore's application changes the item Beijing wrote: an UpdateItem (the bridge's attribute stays
    # as replication left it), or a delete of a state replication wrote
    if write == "update":
        b.update(KEY, {"v": {"S": "Singapore's update"}})
    else:
        b.delete(KEY)
    world.drain()
    # THEN it crosses like any local write (the last write of the item, in both regions); the naive relay took
    # it for replication's own
    expected = {} if write == "delete" else {K: canonical_item({**KEY, "v": {"S": "Singapore's update"}})}
    assert (
        {k: {n: v for n, v in item.items() if n != "w"} for k, item in data(world.a).items()} == expected
    ) is not naive
    assert converged(world, {"a": a, "b": b}) is not naive or write == "delete"


# -- random batch boundaries: a region's versions of one item keep increasing across invocations ------------
def naive_forget_across_batches(sidetable: Any) -> Callable[..., Any]:
    def of(item: Any) -> Any:
        return sidetable.LocalRecord()  # nothing remembered of the local changes of earlier invocations

    return of


@pytest.mark.parametrize("naive", [FIXED, NAIVE])
def test_a_regions_versions_keep_increasing_across_invocations(bridge: TwoRegions, naive: bool) -> None:
    world = bridge
    same_second(world)
    if naive:
        sidetable = layer(world.b, "relay", "sidetable")
        sidetable.LocalRecord.of = staticmethod(naive_forget_across_batches(sidetable))
        layer(world.b, "relay", "stream_relay").LocalRecord.of = sidetable.LocalRecord.of
    rng = __import__("random").Random(3)
    a, b = PlainWriter(world.a.ddb, world.a.table, rng), PlainWriter(world.b.ddb, world.b.table, rng)
    a.put(KEY, {"v": {"S": "from Beijing"}})
    world.drain()
    # WHEN Singapore (whose tag loses a tie to Beijing's) writes the item twice in the same second, each write
    # relayed by its own invocation: the first is raised above Beijing's state, the second must follow it
    world.b.stream_poller.batch_size = 1
    b.update(KEY, {"v": {"S": "first"}})
    world.drain()
    b.update(KEY, {"v": {"S": "second"}})
    world.drain()
    # THEN the second write wins in both regions; the naive relay ordered it below the first one
    assert converged(world, {"a": a, "b": b}) is not naive
    assert naive or data(world.a)[K]["v"] == {"S": "second"}


# -- a peer's delete landing between a local write and its relay ---------------------------------------------
def naive_read_the_stale_attribute(states: Any) -> Callable[..., Any]:
    visible = states.Versions.visible

    def trusting(self: Any, image: Any, local: Any) -> Any:
        raw = (image or {}).get(self.bridge_attr, {}).get("S", "")
        if raw:
            return states.decode_version(raw.partition(":")[2])  # whatever the attribute says, even stale
        return visible(self, image, local)

    return trusting


@pytest.mark.parametrize("naive", [FIXED, NAIVE])
def test_a_peer_delete_between_a_local_write_and_its_relay(bridge: TwoRegions, naive: bool) -> None:
    world = bridge
    same_second(world)
    if naive:
        states = layer(world.b, "applier", "states")
        states.Versions.visible = naive_read_the_stale_attribute(states)
    rng = __import__("random").Random(4)
    a, b = PlainWriter(world.a.ddb, world.a.table, rng), PlainWriter(world.b.ddb, world.b.table, rng)
    a.put(KEY, {"v": {"S": "from Beijing"}})
    world.drain()
    # WHEN Singapore updates the item and, before its relay ran, Beijing's delete of it is applied there
    b.update(KEY, {"v": {"S": "Singapore's update"}})
    a.delete(KEY)
    world.a.stream_poller.poll_once()
    world.b.kinesis_poller.poll_once()
    world.drain()
    # THEN both regions end at the newer of the two (the update: it was written over Beijing's state in
    # the same second, so it follows it); the naive applier removed it as if it were Beijing's version, and
    # Singapore's relay sent that removal back as a local delete
    assert converged(world, {"a": a, "b": b}) is not naive


# -- a process killed mid-invocation -----------------------------------------------------------------------------
def kill_after(client: Any, operation: str) -> None:
    state = {"done": False}

    def after(**_: Any) -> None:
        if not state["done"]:
            state["done"] = True
            raise Killed(operation)

    client.meta.events.register(f"after-call.dynamodb.{operation}", after)


@pytest.mark.parametrize("naive", [FIXED, NAIVE])
def test_an_applier_killed_after_removing_an_item_never_forgets_the_delete(bridge: TwoRegions, naive: bool) -> None:
    world = bridge
    same_second(world)
    apply = layer(world.a, "applier", "apply")
    if naive:
        apply.Applier._delete = naive_delete_then_remember(apply)
    kill_after(layer(world.a, "applier", "applier").runtime().local.dynamodb, "DeleteItem")
    rng = __import__("random").Random(5)
    a, b = PlainWriter(world.a.ddb, world.a.table, rng), PlainWriter(world.b.ddb, world.b.table, rng)
    a.put(KEY, {"v": {"S": "one"}})
    world.drain()
    # WHEN Singapore deletes the item and Beijing's applier dies right after its DeleteItem returned
    b.delete(KEY)
    world.b.stream_poller.poll_once()
    delete = kinesis_records(world.a)[-1:]
    with pytest.raises(Killed):
        world.a.applier.invoke({"Records": delete})
    # AND Beijing's relay reads the REMOVE before Lambda retries that batch, while Singapore re-creates the item
    world.a.stream_poller.poll_once()
    b.put(KEY, {"v": {"S": "re-created"}})
    world.drain()
    # THEN the re-creation stands in both regions; the naive applier, killed before it remembered the delete,
    # let its REMOVE cross back as a delete of Beijing's own
    assert converged(world, {"a": a, "b": b}) is not naive
    assert naive or data(world.a)[K]["v"] == {"S": "re-created"}


# -- a write that happened and whose response was lost --------------------------------------------------------
def lose_every_response(client: Any, operation: str, state: dict[str, bool]) -> None:
    """While `state["on"]`, every call goes through and its response is lost (a read timeout)."""
    import urllib.request

    from harness.moto_server import LOOPBACK

    def before(request: Any, **_: Any) -> Any:
        if not state["on"]:
            return None
        headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        LOOPBACK.open(urllib.request.Request(request.url, data=request.body, headers=headers, method="POST")).read()
        raise ReadTimeoutError(endpoint_url=request.url)

    client.meta.events.register_first(f"before-send.kinesis.{operation}", before)


def naive_version_at_relay_time(stream_relay: Any) -> Callable[..., Any]:
    import time

    def _second_us(approx_ms: int) -> int:
        return int(time.time() * 1_000_000)  # "stamped by the bridge when it relays"

    return _second_us


@pytest.mark.parametrize("naive", [FIXED, NAIVE])
def test_a_change_relayed_again_after_a_lost_response_keeps_its_version(bridge: TwoRegions, naive: bool) -> None:
    world = bridge
    relay = layer(world.a, "relay", "stream_relay")
    if naive:
        relay._second_us = naive_version_at_relay_time(relay)
        relay.LocalRecord.of = staticmethod(lambda item: relay.LocalRecord())
    peer = relay.runtime().peer
    make = peer.client_factory
    losing = {"on": True}

    def factory(session: Any, region: str, config: Any) -> Any:
        client = make(session, region, config)
        lose_every_response(getattr(client, "_client", client), "PutRecords", losing)
        return client

    peer.client_factory = factory
    peer.refresh()
    poller = world.a.stream_poller
    assert poller is not None
    handler = poller.handler

    def first_invocation_loses_everything(event: dict[str, Any]) -> Any:
        try:
            return handler(event)
        finally:
            losing["on"] = False  # Lambda's retry of the batch gets its responses

    poller.handler = first_invocation_loses_everything
    rng = __import__("random").Random(6)
    a, b = PlainWriter(world.a.ddb, world.a.table, rng), PlainWriter(world.b.ddb, world.b.table, rng)
    # WHEN Beijing's relay sends a change and every response of its first invocation is lost (the records
    # got in), so the batch is relayed again
    a.put(KEY, {"v": {"S": "one"}})
    world.drain()
    # THEN the change went out again with the same version: one change, one version (the naive relay stamped
    # it afresh: two versions of one change crossed, which a concurrent write would be ordered between)
    assert converged(world, {"a": a, "b": b}) is not naive
    assert len([c for c in crossed(world.b) if c["op"] == "P"]) > 1  # it did cross more than once


# -- writers whose clocks lag by tens of milliseconds (application stamps) -------------------------------------
@pytest.mark.parametrize("naive", [FIXED, NAIVE])
def test_a_writer_whose_clock_lags_loses_in_both_regions(application: TwoRegions, naive: bool) -> None:
    world = application
    if naive:
        relay = layer(world.b, "relay", "stream_relay")
        plan = relay._Walker._plan

        def no_repair(self: Any, *args: Any) -> Any:
            result = plan(self, *args)
            result.repair = None
            return result

        relay._Walker._plan = no_repair
    oracle = Oracle()
    a = Writer(world.a.ddb, world.a.table, world.a.tag, oracle, clock=Clock())
    b = Writer(world.b.ddb, world.b.table, world.b.tag, oracle, clock=Clock(skew_ms=-40))
    a.put(KEY, {"v": {"S": "Beijing"}})
    world.drain()
    # WHEN a Singapore writer whose clock is 40 ms behind writes the item just after
    b.put(KEY, {"v": {"S": "Singapore, late clock"}}, ts=oracle.writes[K][0][0].ts // 1000 - 30)
    world.drain()
    # THEN Beijing's write (the later stamp) stays in both regions; the naive relay kept the older one locally
    assert (data(world.a) == data(world.b) == oracle.expected()) is not naive
    assert AHEAD_MS > 0
