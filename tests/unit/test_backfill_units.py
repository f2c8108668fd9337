"""The backfill's pure parts: input, capacity and rate shares, the rate limiter, the conditional writes."""

from __future__ import annotations

import base64
import threading
from typing import Any

import pytest

from ddb_bridge.core.capacity import RateLimiter, read_units, write_units
from ddb_bridge.core.changes import from_stream_record
from ddb_bridge.core.codec import item_size
from ddb_bridge.core.settings import SettingsError, VersionAttrs
from ddb_bridge.loads.backfill.clients import BackfillClients
from ddb_bridge.loads.backfill.copy import _copy_loop, _Progress
from ddb_bridge.loads.backfill.plan import InvalidInput, default_segments, parse_input, segment_rates, table_capacity
from ddb_bridge.loads.backfill.writers import LiveWriter, Written
from ddb_bridge.loads.settings import BackfillSettings
from ddb_bridge.table.tombstones import Tombstones


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


def test_rate_limiter_keeps_the_rate_after_one_second_of_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, clock.now, clock.sleep)
    for _ in range(50):
        limiter.spend(10)  # 500 units at 100/s: 1 s of burst, then 4 s of waiting
    assert clock.t - 1000.0 == pytest.approx(4.0)
    assert limiter.waited == pytest.approx(4.0)


def test_rate_limiter_refills_while_work_takes_time() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, clock.now, clock.sleep)
    for _ in range(10):
        clock.t += 0.5  # the work itself takes 0.5 s per 40 units: under the rate
        limiter.spend(40)
    assert clock.sleeps == []


def test_rate_limiter_without_a_rate_never_waits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock.now, clock.sleep)
    limiter.spend(1e9)
    assert clock.sleeps == []


def test_capacity_of_provisioned_and_on_demand_tables() -> None:
    provisioned = {
        "BillingModeSummary": {"BillingMode": "PROVISIONED"},
        "ProvisionedThroughput": {"ReadCapacityUnits": 300, "WriteCapacityUnits": 80},
    }
    assert table_capacity(provisioned) == {"read": 300, "write": 80, "basis": "provisioned capacity"}
    warm = {
        "BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
        "WarmThroughput": {"ReadUnitsPerSecond": 24000, "WriteUnitsPerSecond": 8000, "Status": "ACTIVE"},
    }
    assert table_capacity(warm) == {"read": 24000, "write": 8000, "basis": "on-demand warm throughput"}
    capped = {**warm, "OnDemandThroughput": {"MaxReadRequestUnits": 1000, "MaxWriteRequestUnits": -1}}
    assert table_capacity(capped)["read"] == 1000 and table_capacity(capped)["write"] == 8000
    bare = {"BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"}}
    assert table_capacity(bare) == {"read": 12000, "write": 4000, "basis": "on-demand initial throughput"}


def test_segment_rates_share_capacity_and_caps_evenly() -> None:
    values = {"throughputPercent": 25, "maxReadUnitsPerSecond": None, "maxWriteUnitsPerSecond": None}
    source, target = {"read": 12000, "write": 4000}, {"read": 12000, "write": 4000}
    assert segment_rates(values, source, target, 4) == (750.0, 250.0)
    capped = {**values, "maxWriteUnitsPerSecond": 400, "maxReadUnitsPerSecond": 100}
    assert segment_rates(capped, source, target, 4) == (25.0, 100.0)


def test_default_segments_follow_table_size() -> None:
    assert default_segments({"TableSizeBytes": 0}) == 1
    assert default_segments({"TableSizeBytes": 100 * 1024**3}) == 50
    assert default_segments({"TableSizeBytes": 10 * 1024**4}) == 64


def test_capacity_units_of_a_page() -> None:
    sizes = [item_size(i) for i in ({"pk": {"S": "a" * 1500}}, {"pk": {"S": "b"}})]
    assert sizes == [1502, 3]
    assert read_units(sizes, consistent=True) == 1
    assert read_units(sizes, consistent=False) == 0.5
    assert write_units(sizes, transactional=False) == 3
    assert write_units(sizes, transactional=True) == 6


def test_parse_input_defaults_and_errors() -> None:
    values = parse_input({}, "exec-1")
    assert values["backfillId"] == "exec-1" and values["consistentRead"] is True
    assert values["writeMode"] is None  # live, unless a backfill of the same id was started otherwise
    assert values["throughputPercent"] == 25 and values["totalSegments"] is None
    assert parse_input({"totalSegments": "8"}, "e")["totalSegments"] == 8
    with pytest.raises(InvalidInput, match="pageSize must be from 1 to 10000"):
        parse_input({"pageSize": 0}, "e")
    with pytest.raises(InvalidInput, match="must be a whole number"):
        parse_input({"pageSize": 2.5}, "e")
    with pytest.raises(InvalidInput, match="JSON object"):
        parse_input("go", "e")


def _writer(mode: str) -> LiveWriter:
    return LiveWriter(
        None,
        "target",
        ("pk", "sk"),
        Tombstones("tombs", 0),
        replication_mode=mode,
        attrs=VersionAttrs(),
        sleep=lambda s: None,
    )


def test_ordered_live_copy_only_fills_holes_that_no_delete_made() -> None:
    check, put = _writer("ordered").transaction({"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"S": "x"}})
    assert check["ConditionCheck"]["ConditionExpression"] == "attribute_not_exists(pk)"
    assert "ExpressionAttributeNames" not in check["ConditionCheck"]
    assert put["Put"]["ConditionExpression"] == "attribute_not_exists(#k)"
    assert put["Put"]["ExpressionAttributeNames"] == {"#k": "pk"}


def test_lww_live_copy_compares_versions_with_the_item_and_its_tombstone() -> None:
    item = {
        "pk": {"S": "a"},
        "sk": {"N": "1"},
        "last_update_timestamp": {"N": "42"},
        "last_updater_region": {"S": "eu-west-1"},
    }
    check, put = _writer("lww").transaction(item)
    # the tombstone holds normalised microseconds (42 is seconds: below 10^11): the tuple compares there
    assert "#ts < :ts" in check["ConditionCheck"]["ConditionExpression"]
    assert check["ConditionCheck"]["ExpressionAttributeValues"] == {":ts": {"N": "42000000"}, ":o": {"S": "eu-west-1"}}
    assert check["ConditionCheck"]["ExpressionAttributeNames"] == {"#ts": "ts", "#o": "origin"}
    # the item's own stamp is compared in its own form (the fast path), and the stored item comes back
    assert put["Put"]["ExpressionAttributeValues"] == {
        ":sec": {"N": "42"},
        ":msmin": {"N": "100000000000"},
        ":ms": {"N": "42000"},
    }
    assert put["Put"]["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
    unversioned = _writer("lww").transaction({"pk": {"S": "a"}, "sk": {"N": "1"}})
    assert unversioned[1]["Put"]["ConditionExpression"] == "attribute_not_exists(#k)"


def test_live_copy_checks_the_very_tombstone_the_replicator_writes_for_a_binary_key() -> None:
    key = {"pk": {"B": b"\x00\xffkey"}, "sk": {"N": "7"}}
    wire = {"pk": {"B": base64.b64encode(b"\x00\xffkey").decode()}, "sk": {"N": "7"}}
    record = {
        "eventName": "REMOVE",
        "dynamodb": {"Keys": wire, "OldImage": wire, "SequenceNumber": "1", "ApproximateCreationDateTime": 1.0},
    }
    change = from_stream_record(record, VersionAttrs())
    check, _ = _writer("ordered").transaction({**key, "v": {"S": "x"}})
    assert check["ConditionCheck"]["Key"] == Tombstones("tombs", 0).key_of(change.key_id)


def test_backfill_settings_name_the_bad_variable() -> None:
    env = {
        "AWS_REGION": "us-east-1",
        "SOURCE_TABLE_NAME": "orders",
        "TARGET_TABLE_NAME": "orders",
        "BACKFILL_PROGRESS_TABLE": "progress",
    }
    assert BackfillSettings.from_env(env).write_concurrency == 8
    with pytest.raises(SettingsError, match="BACKFILL_PROGRESS_TABLE is required"):
        BackfillSettings.from_env({k: v for k, v in env.items() if k != "BACKFILL_PROGRESS_TABLE"})
    with pytest.raises(SettingsError, match="PEER_CREDENTIALS_PARAMETER_PREFIX is required"):
        BackfillSettings.from_env({**env, "TARGET_REGION": "cn-north-1"})
    with pytest.raises(SettingsError, match="BACKFILL_WRITE_CONCURRENCY"):
        BackfillSettings.from_env({**env, "BACKFILL_WRITE_CONCURRENCY": "0"})


# ---- the copy loop's read-ahead ----------------------------------------------------------------------------
class PagedSource:
    """A source table of `pages` pages of 3 items; records every Scan's start key, in order."""

    def __init__(self, pages: int) -> None:
        self.pages = pages
        self.starts: list[Any] = []
        self.lock = threading.Lock()
        self.scanned = threading.Condition(self.lock)

    def scan(self, **kwargs: Any) -> dict[str, Any]:
        start = kwargs.get("ExclusiveStartKey")
        page = 0 if start is None else int(start["pk"]["S"].removeprefix("end-of-")) + 1
        with self.scanned:
            self.starts.append(start)
            self.scanned.notify_all()
        out: dict[str, Any] = {"Items": [{"pk": {"S": f"p{page}-{i}"}} for i in range(3)]}
        if page + 1 < self.pages:
            out["LastEvaluatedKey"] = {"pk": {"S": f"end-of-{page}"}}
        return out


class Recorder:
    """A writer and a checkpoint store that record what reaches them."""

    def __init__(self, source: PagedSource, clock: FakeClock, *, wait_for_read_ahead: bool = False) -> None:
        self.source = source
        self.clock = clock
        self.wait = wait_for_read_ahead
        self.written: list[str] = []
        self.saved: list[Any] = []

    def write(self, items: list[dict[str, Any]]) -> Written:
        page = int(items[0]["pk"]["S"].split("-")[0].removeprefix("p"))
        if self.wait and page + 1 < self.source.pages:
            with self.source.scanned:  # the next page's Scan must start while this page is being written
                assert self.source.scanned.wait_for(lambda: len(self.source.starts) > page + 1, timeout=5), (
                    f"page {page + 1} was not read while page {page} was written"
                )
        self.written += [i["pk"]["S"] for i in items]
        self.clock.t += 1  # a page takes a second to write
        return Written(copied=len(items), requests=1)

    def save(self, backfill_id: str, segment: int, owner: str, progress: dict[str, Any]) -> None:
        self.saved.append(progress["lastEvaluatedKey"])


def _loop(source: PagedSource, recorder: Recorder, progress: _Progress, clock: FakeClock, budget: float) -> None:
    env = {"AWS_REGION": "us-east-1", "SOURCE_TABLE_NAME": "src", "TARGET_TABLE_NAME": "dst"}
    settings = BackfillSettings.from_env({**env, "BACKFILL_PROGRESS_TABLE": "progress"})
    clients = BackfillClients(source=source, target=None, now=clock.now, sleep=clock.sleep)  # type: ignore[arg-type]
    state = {"backfillId": "b", "segment": 0, "totalSegments": 1, "pageSize": 3}
    _copy_loop(state, settings, clients, recorder, "me", progress, clock.now(), budget, recorder)  # type: ignore[arg-type]


def test_copy_loop_reads_the_next_page_while_it_writes_this_one() -> None:
    source = PagedSource(pages=4)
    clock = FakeClock()
    recorder = Recorder(source, clock, wait_for_read_ahead=True)
    progress = _Progress()
    _loop(source, recorder, progress, clock, budget=60)
    assert recorder.written == [f"p{p}-{i}" for p in range(4) for i in range(3)]
    assert len(source.starts) == 4  # each page read once
    assert progress.done and progress.copied == 12 and progress.pages == 4
    assert [k and k["pk"]["S"] for k in recorder.saved] == ["end-of-0", "end-of-1", "end-of-2", None]


def test_a_page_read_ahead_but_not_written_is_read_again_by_the_next_call() -> None:
    source = PagedSource(pages=3)
    clock = FakeClock()
    recorder = Recorder(source, clock)
    progress = _Progress()
    _loop(source, recorder, progress, clock, budget=2)  # time is up after the first page
    assert recorder.written == ["p0-0", "p0-1", "p0-2"]
    assert progress.last_key == {"pk": {"S": "end-of-0"}} and not progress.done
    assert source.starts == [None, {"pk": {"S": "end-of-0"}}]  # page 1 was read ahead, then dropped

    _loop(source, recorder, progress, clock, budget=60)  # the next call resumes from the checkpoint
    assert recorder.written == [f"p{p}-{i}" for p in range(3) for i in range(3)]  # each item once
    assert source.starts[2] == {"pk": {"S": "end-of-0"}}  # page 1 read again, from the checkpoint
    assert progress.done and progress.copied == 9
