"""The backfill's write rules under exact interleavings (docs/design.md#full-load-handover), against moto over HTTP.

The scan reads a page, then, before the backfill writes it, the source changes and live replication
applies the change to the target. `live` mode must leave the newer live state in place and must not
bring a deleted item back; `overwrite` mode (the negative control) does both wrong, which proves the
scenario really exercises the rule.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from ddb_bridge.core.access import TargetAccess
from ddb_bridge.loads.backfill.clients import BackfillClients
from ddb_bridge.loads.backfill.copy import copy_segment
from ddb_bridge.loads.settings import BackfillSettings
from harness.lambdas import LocalFunction
from harness.load_world import LoadWorld, TableShape, load_world
from harness.streams import StreamPoller
from harness.world import scan_all


class ChangesAfterScan:
    """A source client whose first Scan page is followed by live changes, applied to the target by CDC."""

    def __init__(self, client: Any, change: Callable[[], None]) -> None:
        self._client = client
        self._change = change
        self.pages = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def scan(self, **kwargs: Any) -> dict[str, Any]:
        page = dict(self._client.scan(**kwargs))
        self.pages += 1
        if self.pages == 1:
            self._change()
        return page


@pytest.fixture
def world(aws: Any) -> Iterator[LoadWorld]:
    world = load_world(TableShape(key_schema=[("pk", "S")]))
    world.create_target_table()
    world.create_backfill_tables()
    yield world


def stamped(i: int, note: str, ts: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"k{i}"},
        "note": {"S": note},
        "bin": {"B": b"\x00\x01"},
        "last_update_timestamp": {"N": str(ts)},
        "last_updater_region": {"S": "us-east-1"},
    }


def backfill(world: LoadWorld, mode: str, write_mode: str, change: Callable[[], None]) -> dict[str, Any]:
    env = {**world.backfill_env(REPLICATION_MODE=mode)}
    settings = BackfillSettings.from_env(env)
    source = ChangesAfterScan(boto3.client("dynamodb", region_name="us-east-1"), change)
    clients = BackfillClients(source=source, target=TargetAccess(settings.target, None), sleep=lambda s: None)
    state = {
        "backfillId": f"rules-{mode}-{write_mode}",
        "segment": 0,
        "totalSegments": 1,
        "writeMode": write_mode,
        "pageSize": 100,
        "consistentRead": True,
    }
    out = copy_segment(state, settings, clients, owner="test", budget_seconds=60)
    assert source.pages >= 1 and out["done"]
    return out


@pytest.mark.parametrize("mode", ["ordered", "lww"])
@pytest.mark.parametrize("write_mode", ["live", "overwrite"])
def test_backfill_write_rules_under_live_changes(world: LoadWorld, mode: str, write_mode: str) -> None:
    # GIVEN five items, and live replication (with tombstones) that starts before the backfill
    now = int(time.time() * 1000)
    for i in range(5):
        world.put(stamped(i, "old", now - 60_000 + i))
    replicator = LocalFunction(
        "table_replicator", world.replicator_env(REPLICATION_MODE=mode, TOMBSTONE_TABLE_NAME=world.tombstone_table)
    )
    poller = StreamPoller(world.streams, world.stream_arn, lambda event: {"batchItemFailures": []})
    poller.drain()  # replication starts here: the five puts are behind it
    poller.handler = replicator.invoke

    # AND right after the scan read them, k1 is updated, k2 deleted, k3 deleted and re-created, and CDC applies it
    def live_changes() -> None:
        world.put(stamped(1, "newer, live", now + 1000))
        world.delete({"pk": {"S": "k2"}})
        world.delete({"pk": {"S": "k3"}})
        world.put(stamped(3, "re-created, live", now + 2000))
        poller.drain()

    # WHEN the backfill writes the (now stale) page
    out = backfill(world, mode, write_mode, live_changes)
    poller.drain()
    target = scan_all(world.target, world.target_table)
    source = scan_all(world.source, world.source_table)

    if write_mode == "live":
        # THEN the live writes win: k1 and k3 keep their newer values, k2 stays deleted, the rest is copied
        assert target == source
        assert out["copied"] == 2 and out["skipped"] == 3  # k0 and k4 copied; k1, k2, k3 belong to replication
    else:
        # THEN (negative control) an unconditional copy puts stale data back: the rule is what makes it right
        assert target != source
        assert target[_k(1)]["note"]["S"] == "old"  # a newer live write overwritten
        assert _k(2) in target and _k(2) not in source  # a live delete resurrected


def _k(i: int) -> str:
    return json.dumps({"pk": {"S": f"k{i}"}}, separators=(",", ":"))


def test_backfill_live_mode_emits_progress_metrics(world: LoadWorld) -> None:
    from ddb_bridge.core.observability import metrics

    for i in range(7):
        world.put(stamped(i, "x", 1))
    metrics.clear_metrics()
    out = backfill(world, "ordered", "live", lambda: None)
    assert out["copied"] == 7
    assert metrics.metric_set["BackfillItemsCopied"]["Value"] == [7.0]
    assert metrics.metric_set["BackfillItemsSkipped"]["Value"] == [0.0]
    metrics.clear_metrics()


def test_backfill_lww_live_mode_fixes_an_older_copy_already_in_the_target(world: LoadWorld) -> None:
    # GIVEN a target that already holds older versions (and an unversioned leftover) of some items
    now = int(time.time() * 1000)
    for i in range(4):
        world.put(stamped(i, "current", now + i))
    world.target.put_item(TableName=world.target_table, Item=stamped(0, "stale copy", now - 5000))
    world.target.put_item(TableName=world.target_table, Item={"pk": {"S": "k1"}, "note": {"S": "unversioned"}})
    world.target.put_item(TableName=world.target_table, Item=stamped(2, "newer in target", now + 9000))

    # WHEN a live-mode backfill runs with lww replication
    out = backfill(world, "lww", "live", lambda: None)

    # THEN older and unversioned copies are replaced, a newer one is kept
    target = scan_all(world.target, world.target_table)
    assert target[_k(0)]["note"]["S"] == "current"
    assert target[_k(1)]["note"]["S"] == "current"
    assert target[_k(2)]["note"]["S"] == "newer in target"
    assert target[_k(3)]["note"]["S"] == "current"
    assert out["copied"] == 3 and out["skipped"] == 1


def test_backfill_lww_live_mode_orders_the_samples_stamps_against_every_form_in_the_target(world: LoadWorld) -> None:
    # GIVEN a source stamped as the public sample stamps (seconds as Decimal(time.time())), and a target
    # holding copies stamped in other forms: older and newer milliseconds, numeric text, an unreadable text
    from decimal import Decimal

    now = Decimal(time.time())
    ms = int(now * 1000)

    def item(i: int, note: str, ts: dict[str, Any]) -> dict[str, Any]:
        return {
            "pk": {"S": f"k{i}"},
            "note": {"S": note},
            "last_update_timestamp": ts,
            "last_updater_region": {"S": "us-east-1"},
        }

    for i in range(6):
        world.put(item(i, "source", {"N": str(now)}))
    world.target.put_item(TableName=world.target_table, Item=item(0, "older ms", {"N": str(ms - 5000)}))
    world.target.put_item(TableName=world.target_table, Item=item(1, "newer ms", {"N": str(ms + 5000)}))
    world.target.put_item(TableName=world.target_table, Item=item(2, "older text", {"S": str(ms - 5000)}))
    world.target.put_item(TableName=world.target_table, Item=item(3, "unreadable", {"S": "yesterday"}))
    world.target.put_item(TableName=world.target_table, Item=item(4, "newer seconds", {"N": str(now + 5)}))
    # WHEN a live-mode backfill runs with lww replication
    out = backfill(world, "lww", "live", lambda: None)
    # THEN each key holds what last-writer-wins says, whatever form each side stamped in; none was refused
    target = {k: v["note"]["S"] for k, v in scan_all(world.target, world.target_table).items()}
    assert target == {
        _k(0): "source",
        _k(1): "newer ms",
        _k(2): "source",
        _k(3): "source",  # an unreadable stamp is unstamped: older than any version
        _k(4): "newer seconds",
        _k(5): "source",
    }
    assert out["copied"] == 4 and out["skipped"] == 2 and out["parked"] == 0
