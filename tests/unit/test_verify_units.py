"""Verify's rules without AWS: the canonical form, the verdicts, the input, the settings, the repair guard,
batched reads with UnprocessedKeys, and the progress a caller reads."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddb_bridge.core.canonical import canonical, digest, number, same_item
from ddb_bridge.core.capacity import RateLimiter, consumed_units, item_read_units
from ddb_bridge.core.checkpoints import decode_item, encode_field
from ddb_bridge.core.codec import encode_image, from_python
from ddb_bridge.core.errors import RetryableError
from ddb_bridge.core.inputs import InvalidInput
from ddb_bridge.core.settings import SettingsError, VersionAttrs
from ddb_bridge.core.versions import Version, encode_version
from ddb_bridge.relay.states import digest as state_digest
from ddb_bridge.table.writer import GUARD_MAX_CHARS, same_content
from ddb_bridge.verify.compare import KeyReader, source_candidates
from ddb_bridge.verify.plan import parse_input, rates
from ddb_bridge.verify.progress import progress_of
from ddb_bridge.verify.recheck import classify, item_version
from ddb_bridge.verify.settings import VerifySettings

ATTRS = VersionAttrs()
NOW_MS = 1_796_000_000_000  # stamps are milliseconds since the epoch


# ---- canonical form ------------------------------------------------------------------------------------------
def test_spelling_and_order_never_make_two_items_differ() -> None:
    a = {
        "pk": {"S": "k"},
        "n": {"N": "1.50"},
        "e": {"N": "1E2"},
        "z": {"N": "-0.000"},
        "ss": {"SS": ["b", "a"]},
        "ns": {"NS": ["2.50", "10"]},
        "bs": {"BS": [b"\x02", b"\x01"]},
        "m": {"M": {"y": {"N": "3.0"}, "x": {"L": [{"N": "01"}]}}},
    }
    b = dict(reversed(list(a.items())))
    b.update(
        n={"N": "1.5"},
        e={"N": "100"},
        z={"N": "0"},
        ss={"SS": ["a", "b"]},
        ns={"NS": ["10", "2.5"]},
        bs={"BS": [b"\x01", b"\x02"]},
        m={"M": {"x": {"L": [{"N": "1"}]}, "y": {"N": "3"}}},
    )
    assert a != b and same_item(a, b) and digest(a) == digest(b)
    assert digest(a) == digest(encode_image(a))  # bytes or Lambda's base64: the same digest


def test_every_real_difference_shows() -> None:
    base = {"pk": {"S": "k"}, "b": {"B": b"\x00\x01\x02"}, "l": {"L": [{"S": "a"}, {"S": "b"}]}, "s": {"S": "1"}}
    changes = [
        {"b": {"B": b"\x00\x01\x03"}},  # one byte
        {"l": {"L": [{"S": "b"}, {"S": "a"}]}},  # list order matters
        {"s": {"N": "1"}},  # types stay apart
        {"extra": {"NULL": True}},
        {"m": {"M": {"x": {"M": {"y": {"N": "1"}}}}}},
    ]
    for change in changes:
        assert not same_item(base, {**base, **change}), change
    assert not same_item(base, None) and same_item(None, None)


def test_38_digit_numbers_keep_every_digit() -> None:
    a, b = "12345678901234567890123456789012345678", "12345678901234567890123456789012345679"
    assert number(a) == a and number(a) != number(b)
    assert not same_item({"n": {"N": a}}, {"n": {"N": b}})
    assert number("1.0E+37") == "1" + "0" * 37 and number("-1E-37") == "-0." + "0" * 36 + "1"
    # the bridge's attribute digests the same canonical form (a shorter hash)
    assert state_digest({"n": {"N": a}}) != state_digest({"n": {"N": b}})
    assert state_digest({"n": {"N": "1.50"}}) == state_digest({"n": {"N": "1.5"}})


def test_bidirectional_reads_the_bridges_version_when_writers_stamp_nothing() -> None:
    def copy(body: dict[str, Any], ts_ms: int) -> dict[str, Any]:
        version = Version(ts_ms * 1000, "ap-southeast-1", 7, 1)
        return {**body, "ddbb_v": {"S": f"{state_digest(body)}:{encode_version(version)}"}}

    local = {"pk": {"S": "k"}, "v": {"N": "1"}}
    fresh, old = copy({"pk": {"S": "k"}, "v": {"N": "2"}}, NOW_MS - 1_000), copy(local, NOW_MS - 3_600_000)
    assert item_version(fresh, ATTRS, "ddbb_v") == Version((NOW_MS - 1_000) * 1000, "ap-southeast-1", 7, 1)
    assert item_version(fresh, ATTRS) is None  # one-way modes never read the bridge's attribute
    # a local write that kept a replicated copy's attribute shows no version (its digest no longer matches)
    assert item_version({**fresh, "v": {"N": "3"}}, ATTRS, "ddbb_v") is None
    assert item_version({**local, "ddbb_v": {"S": "garbage"}}, ATTRS, "ddbb_v") is None

    def judge(s: Any, t: Any) -> str:
        first = {"source": digest(s), "target": digest(t)}
        return classify(
            first, s, t, mode="bidirectional", attrs=ATTRS, ignore=("ddbb_v",), now_ms=NOW_MS,
            in_flight_ms=300_000, bridge_attr="ddbb_v",
        ).kind  # fmt: skip

    assert judge(local, fresh) == "inFlight"  # the target's newer copy was written a second ago
    assert judge(local, old) == "settled"  # equal but for the bridge's attribute
    assert judge({**local, "v": {"N": "9"}}, old) == "different"  # an hour-old version not replicated back


def test_ignored_attributes_are_left_out() -> None:
    a = {"pk": {"S": "k"}, "v": {"N": "1"}, "audit": {"S": "x"}}
    b = {"pk": {"S": "k"}, "v": {"N": "1"}}
    assert not same_item(a, b) and same_item(a, b, {"audit"}) and canonical(a, {"audit"}) == canonical(b)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.decimals(allow_nan=False, allow_infinity=False, places=4), min_size=1, max_size=5, unique=True))
def test_number_sets_are_equal_in_any_order_and_spelling(values: list[Decimal]) -> None:
    normal = [str(v) for v in values]
    spelled = [f"{v:.6f}" for v in reversed(values)]
    assert same_item({"ns": {"NS": normal}}, {"ns": {"NS": spelled}})


# ---- verdicts ------------------------------------------------------------------------------------------------
def stamped(ts: int, note: str = "x", origin: str = "us-east-1") -> dict[str, Any]:
    return {
        "pk": {"S": "k"},
        "note": {"S": note},
        "last_update_timestamp": {"N": str(ts)},
        "last_updater_region": {"S": origin},
    }


def verdict(first_s: Any, first_t: Any, s: Any, t: Any, mode: str = "ordered", now_ms: int = NOW_MS) -> str:
    first = {"source": digest(first_s) if first_s else None, "target": digest(first_t) if first_t else None}
    return classify(first, s, t, mode=mode, attrs=ATTRS, ignore=(), now_ms=now_ms, in_flight_ms=300_000).kind


def test_a_difference_is_real_only_if_it_lasts_unchanged() -> None:
    a, b = {"pk": {"S": "k"}, "v": {"N": "1"}}, {"pk": {"S": "k"}, "v": {"N": "2"}}
    assert verdict(a, b, a, a) == "settled"  # replication caught up
    assert verdict(a, None, None, None) == "settled"  # both deleted
    assert verdict(a, b, b, a) == "inFlight"  # the source changed meanwhile
    assert verdict(a, b, a, {**b, "w": {"S": "1"}}) == "inFlight"  # the target changed meanwhile
    assert verdict(a, b, a, b) == "different"
    assert verdict(a, None, a, None) == "missing"
    assert verdict(None, b, None, b) == "extra"


def test_versions_tell_in_flight_from_real_in_lww_and_bidirectional() -> None:
    now = NOW_MS
    fresh, old = stamped(now - 1_000, "new"), stamped(now - 3_600_000, "old")
    older = stamped(now - 7_200_000, "older")
    # one-way: the target older than a fresh source change is in flight; older than an old one, real
    assert verdict(fresh, older, fresh, older, "lww") == "inFlight"
    assert verdict(fresh, None, fresh, None, "lww") == "inFlight"
    assert verdict(old, older, old, older, "lww") == "different"
    # a target newer than the source is never in flight one-way; in bidirectional it is (while fresh)
    assert verdict(older, fresh, older, fresh, "lww") == "different"
    assert verdict(older, fresh, older, fresh, "bidirectional") == "inFlight"
    assert verdict(older, old, older, old, "bidirectional") == "different"
    # same version, different content: real
    assert verdict(stamped(now, "a"), stamped(now, "b"), stamped(now, "a"), stamped(now, "b"), "lww") == "different"
    first = {"source": digest(old), "target": digest(older)}
    why = classify(first, old, older, mode="lww", attrs=ATTRS, ignore=(), now_ms=now, in_flight_ms=300_000).why
    assert why == "the source holds a newer version, written 3600 s ago: not replicated"


# ---- input and settings --------------------------------------------------------------------------------------
def test_the_input_defaults() -> None:
    assert parse_input(None, "exec-1") == {
        "segments": None,
        "pageSize": 1000,
        "throughputPercent": 25,
        "recheckDelaySeconds": 15,
        "sampleSize": 10,
        "callSeconds": 240,
        "verifyId": "exec-1",
        "repair": False,
        "ignoreAttributes": [],
    }
    with pytest.raises(InvalidInput, match="the execution input must be a JSON object, got list"):
        parse_input([], "x")
    with pytest.raises(InvalidInput, match="ignoreAttributes must hold attribute names"):
        parse_input({"ignoreAttributes": [1]}, "x")


def test_rates_share_each_tables_capacity_between_the_workers() -> None:
    source, target = {"read": 1000, "write": 10}, {"read": 400, "write": 200}
    assert rates(50, source, target, 4) == {
        "sourceReadUnitsPerSecond": 125.0,
        "targetReadUnitsPerSecond": 50.0,
        "targetWriteUnitsPerSecond": 25.0,
    }


ENV = {
    "AWS_REGION": "us-east-1",
    "SOURCE_TABLE_NAME": "orders",
    "TARGET_TABLE_NAME": "orders-copy",
    "VERIFY_PROGRESS_TABLE": "verify-progress",
    "VERIFY_REPORT_BUCKET": "verify-report",
}


def test_settings_read_and_name_what_is_wrong() -> None:
    s = VerifySettings.from_env({**ENV, "VERIFY_IGNORE_ATTRIBUTES": "audit, etag", "VERIFY_MODE": "LWW"})
    assert (
        s.ignore_attributes == frozenset({"audit", "etag"})
        and s.mode == "lww"
        and s.report_prefix == "ddb-bridge/verify"
    )
    bad = {
        "VERIFY_MODE": ("fast", "VERIFY_MODE='fast' is invalid: expected one of ordered, lww, bidirectional"),
        "VERIFY_REPORT_BUCKET": ("Bad_Bucket", "VERIFY_REPORT_BUCKET='Bad_Bucket' is invalid: expected an S3 bucket"),
        "VERIFY_IN_FLIGHT_SECONDS": ("0", "VERIFY_IN_FLIGHT_SECONDS=0 is out of range"),
        "TARGET_REGION": (
            "cn-north-1",
            "PEER_CREDENTIALS_PARAMETER_PREFIX is required",
        ),
        "TARGET_TABLE_NAME": ("orders", "verify would compare a table with itself"),
    }
    for name, (value, message) in bad.items():
        with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
            VerifySettings.from_env({**ENV, name: value})
    with pytest.raises(SettingsError, match="VERIFY_PROGRESS_TABLE is required"):
        VerifySettings.from_env({k: v for k, v in ENV.items() if k != "VERIFY_PROGRESS_TABLE"})


# ---- the repair guard ----------------------------------------------------------------------------------------
def test_the_guard_spells_out_the_item_compared() -> None:
    expected = {"pk": {"S": "k"}, "sk": {"N": "1"}, "a": {"S": "x"}, "n": {"NULL": True}, "m": {"M": {}}}
    written = {"pk": {"S": "k"}, "sk": {"N": "1"}, "a": {"S": "y"}, "new": {"S": "z"}}
    guard = same_content(expected, ("pk", "sk"), written)
    assert guard is not None
    assert guard.expression == (
        "attribute_exists(#g0) AND #g1 = :g1 AND #g2 = :g2 AND attribute_type(#g3, :g3) AND attribute_not_exists(#g4)"
    )
    assert guard.names == {"#g0": "pk", "#g1": "a", "#g2": "m", "#g3": "n", "#g4": "new"}
    assert guard.values == {":g1": {"S": "x"}, ":g2": {"M": {}}, ":g3": {"S": "NULL"}}
    absent = same_content(None, ("pk",), written)
    assert absent is not None and absent.expression == "attribute_not_exists(#g0)"
    wide = {"pk": {"S": "k"}, **{f"attribute{i:03d}": {"N": str(i)} for i in range(400)}}
    assert same_content(wide, ("pk",)) is None and GUARD_MAX_CHARS == 4000


# ---- batched reads -------------------------------------------------------------------------------------------
class FlakyBatchGet:
    """Answers BatchGetItem with half of the keys unprocessed `times` times, then everything."""

    def __init__(self, items: dict[str, dict[str, Any]], times: int) -> None:
        self.items, self.times, self.calls = items, times, 0

    def batch_get_item(self, RequestItems: dict[str, Any], ReturnConsumedCapacity: str) -> dict[str, Any]:
        self.calls += 1
        ((table, request),) = RequestItems.items()
        keys = request["Keys"]
        now, later = (keys[: len(keys) // 2], keys[len(keys) // 2 :]) if self.times > 0 else (keys, [])
        self.times -= 1
        found = [self.items[k["pk"]["S"]] for k in now if k["pk"]["S"] in self.items]
        out: dict[str, Any] = {
            "Responses": {table: found},
            "ConsumedCapacity": [{"TableName": table, "CapacityUnits": 3}],
        }
        if later:
            out["UnprocessedKeys"] = {table: {**request, "Keys": later}}
        return out


def reader(client: Any, sleeps: list[float]) -> KeyReader:
    from concurrent.futures import ThreadPoolExecutor

    limiter = RateLimiter(None, lambda: 0.0, sleeps.append)
    return KeyReader(client, "t", ("pk",), False, limiter, ThreadPoolExecutor(2), sleeps.append)


def test_unprocessed_keys_are_read_again_after_a_jittered_backoff() -> None:
    items = {f"k{i}": {"pk": {"S": f"k{i}"}, "v": {"N": str(i)}} for i in range(250) if i % 10}
    sleeps: list[float] = []
    client = FlakyBatchGet(items, times=4)
    found = reader(client, sleeps).read([{"pk": {"S": f"k{i}"}} for i in range(250)])
    assert len(found) == len(items) == 225
    assert len(sleeps) == 4 and all(0 <= s <= 5 for s in sleeps)


def test_keys_still_unprocessed_after_every_try_are_a_retryable_error() -> None:
    sleeps: list[float] = []
    with pytest.raises(RetryableError, match="still unprocessed after 8 tries"):
        reader(FlakyBatchGet({"a": {"pk": {"S": "a"}}}, times=100), sleeps).read(
            [{"pk": {"S": f"k{i}"}} for i in range(4)]
        )


def test_read_units_come_from_dynamodb_else_from_item_sizes() -> None:
    assert consumed_units({"ConsumedCapacity": [{"TableName": "t", "CapacityUnits": 2.5}]}, "t") == 2.5
    assert consumed_units({"ConsumedCapacity": {"TableName": "t", "CapacityUnits": 1}}, "t") == 1
    assert consumed_units({}, "t") is None
    assert item_read_units([100, 5000, 9000], consistent=True) == 1 + 2 + 3
    assert item_read_units([100, 5000], consistent=False) == 1.5


def test_a_source_page_yields_missing_and_different_candidates() -> None:
    items = [from_python({"pk": f"k{i}", "v": i}) for i in range(4)]
    target = {
        '{"pk":{"S":"k0"}}': items[0],
        '{"pk":{"S":"k1"}}': from_python({"pk": "k1", "v": 99}),
        '{"pk":{"S":"k3"}}': {**items[3], "v": {"N": "3.000"}},
    }
    lines = source_candidates(items, target, ("pk",), (), 123)
    assert [(c["key"]["pk"]["S"], c["kind"]) for c in lines] == [("k1", "different"), ("k2", "missing")]
    assert lines[1]["target"] is None and lines[1]["source"] == digest(items[2]) and lines[1]["seenAt"] == 123


# ---- checkpoints and progress --------------------------------------------------------------------------------
def test_checkpoint_fields_round_trip() -> None:
    fields = {"n": 3, "f": 1.5, "b": True, "s": "x", "big": 10**20}
    assert decode_item({k: encode_field(v) for k, v in fields.items()}) == fields
    with pytest.raises(TypeError):
        encode_field([1])


def test_progress_counts_candidates_until_the_recheck_then_confirmed_differences() -> None:
    header = {"totalSegments": 2, "repair": True}
    scanning = {
        "scan-source-0": {"scanned": 50, "missing": 2, "different": 1, "parts": 2, "done": True},
        "scan-source-1": {"scanned": 20},
    }
    p = progress_of(header, scanning)
    assert (p.phase, p.segments_done, p.segments_total, p.compared, p.missing, p.different) == (
        "source",
        1,
        2,
        70,
        2,
        1,
    )
    rechecked = {
        **scanning,
        "scan-source-1": {"scanned": 50, "done": True},
        "scan-target-0": {"candidates": 1, "extra": 1, "parts": 1, "done": True},
        "scan-target-1": {"done": True},
        **{f"recheck-{side}-{s}": {"done": True} for side in ("source", "target") for s in (0, 1)},
        "recheck-source-0": {"missing": 1, "settled": 2, "done": True},
    }
    p = progress_of(header, rechecked)
    assert (p.phase, p.segments_done, p.compared, p.missing, p.different, p.settled) == (
        "repair",
        1,
        101,
        1,
        0,
        2,
    )  # segment 1 found nothing to repair
    assert progress_of({**header, "finishedAt": 5}, rechecked).phase == "done"


def test_reads_spend_the_units_dynamodb_reports_from_the_rate_limit() -> None:
    from concurrent.futures import ThreadPoolExecutor

    items = {f"k{i}": {"pk": {"S": f"k{i}"}} for i in range(300)}
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    limiter = RateLimiter(2.0, lambda: clock[0], sleep)  # 2 units per second, one second of burst
    client = FlakyBatchGet(items, times=0)
    reader = KeyReader(client, "t", ("pk",), False, limiter, ThreadPoolExecutor(2), sleep)
    assert len(reader.read([{"pk": {"S": k}} for k in items])) == 300
    assert reader.stats.requests == 3 and reader.stats.units == 9  # 3 units reported per request
    assert clock[0] == limiter.waited == (9 - 2) / 2  # 9 units at 2 per second, 2 of them from the burst


# ---- step input ----------------------------------------------------------------------------------------------
def test_a_malformed_step_input_fails_the_step_naming_the_field() -> None:
    from ddb_bridge.core.errors import PermanentError
    from ddb_bridge.verify.handler import check_step, run_action

    good = {"verifyId": "v", "side": "source", "segment": 1, "totalSegments": 2, "pageSize": 100, "ignore": []}
    check_step("scan", good)
    bad = {
        "segment 'x'": ({**good, "segment": "x"}, "field segment must be a whole number, got string"),
        "no verifyId": ({k: v for k, v in good.items() if k != "verifyId"}, "field verifyId is missing"),
        "side": ({**good, "side": "left"}, "field side must be 'source' or 'target'"),
        "segment 2 of 2": ({**good, "segment": 2}, "field segment must be from 0 to totalSegments - 1"),
        "page": ({**good, "pageSize": 0}, "field pageSize must be from 1 to 10000"),
        "ignore": ({**good, "ignore": "audit"}, "field ignore must be a JSON list or null, got string"),
    }
    for case, (event, message) in bad.items():
        with pytest.raises(PermanentError, match=message) as error:
            check_step("recheck", event)
        assert error.value.reason == "BadStepInput", case
    with pytest.raises(PermanentError, match=r"field plan\.verifyId is missing"):
        check_step("report", {"plan": {}})
    with pytest.raises(PermanentError, match="unknown action 'compare'"):
        run_action({"action": "compare"}, None, None, owner="x", budget_seconds=1)  # type: ignore[arg-type]
