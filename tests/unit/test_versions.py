"""Versions: stamps in every form normalised to one order; (ts, origin) as a tuple; unversioned is oldest."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ddb_bridge.core.changes import delete_version
from ddb_bridge.core.settings import VersionAttrs
from ddb_bridge.core.versions import (
    Version,
    beats_stored,
    is_newer,
    older_than,
    recorded_version,
    stamp_micros,
    unchanged,
    version_of,
    wins,
)

A = VersionAttrs()
SAMPLE = "1796180270.8668110370635986328125"  # Decimal(time.time()) as the public sample's load_items.py writes it


def stamped(ts, origin):
    return {A.ts: {"N": str(ts)}, A.origin: {"S": origin}}


def test_every_form_a_writer_uses_normalises_to_microseconds():
    assert stamp_micros({"N": "1796180270866"}) == 1_796_180_270_866_000  # integer milliseconds
    assert stamp_micros({"N": SAMPLE}) == 1_796_180_270_866_811  # seconds, many fractional digits
    assert stamp_micros({"N": "1796180270"}) == 1_796_180_270_000_000  # whole seconds
    assert stamp_micros({"S": "1796180270866"}) == stamp_micros({"N": "1796180270866"})  # numeric text
    assert stamp_micros({"S": "1796180270.866811"}) == stamp_micros({"N": SAMPLE})
    assert stamp_micros({"N": "1.796180270866E12"}) == 1_796_180_270_866_000
    assert stamp_micros({"N": "1796180270866.9999"}) == 1_796_180_270_866_999  # floor, never rounded up


def test_the_same_instant_in_seconds_and_in_milliseconds_is_the_same_version():
    seconds = version_of({A.ts: {"N": "1796180270.866"}, A.origin: {"S": "cn-north-1"}}, A)
    millis = version_of({A.ts: {"N": "1796180270866"}, A.origin: {"S": "cn-north-1"}}, A)
    assert seconds == millis == Version(1_796_180_270_866_000, "cn-north-1")


def test_what_cannot_be_read_is_unstamped_never_a_crash():
    for junk in (
        {"S": "yesterday"},
        {"N": "-5"},
        {"N": "NaN"},
        {"S": "Infinity"},
        {"N": "1e999"},  # not a time in any unit
        {"N": "1" * 19},  # 10^18 and above
        {"N": 5},  # a JSON number where text belongs
        {"BOOL": True},
        {"N": "1" * 65},
        {"N": " 5"},
        "1796180270866",
        None,
    ):
        assert stamp_micros(junk) is None, junk
    assert version_of({A.ts: {"S": "yesterday"}}, A) is None
    assert version_of(None, A) is None
    assert version_of({A.ts: {"N": "7"}}, A) == Version(7_000_000, "")  # no origin: the empty tag


@settings(max_examples=300)
@given(
    st.decimals(min_value=0, max_value=Decimal(10) ** 18 - 1, allow_nan=False, allow_infinity=False, places=12),
    st.decimals(min_value=0, max_value=Decimal(10) ** 18 - 1, allow_nan=False, allow_infinity=False, places=12),
)
def test_normalising_never_reverses_the_order_of_two_stamps_of_one_unit(a, b):
    if (a < 10**11) != (b < 10**11):
        return  # different units: compared as instants, not as numbers
    low, high = sorted((a, b))
    assert stamp_micros({"N": str(low)}) <= stamp_micros({"N": str(high)})


def test_ties_on_ts_are_broken_by_origin_the_same_way_on_both_sides():
    a, b = Version(1000, "cn-north-1"), Version(1000, "ap-southeast-1")
    assert is_newer(a, b) and not is_newer(b, a)


def test_same_version_is_not_newer_so_a_duplicate_is_a_noop():
    assert not is_newer(Version(5, "x"), Version(5, "x"))
    assert not wins(Version(5, "x"), Version(5, "x"))


def test_unversioned_is_older_than_any_version_and_replaces_only_the_unversioned():
    assert is_newer(Version(0, ""), None)
    assert not is_newer(None, Version(0, ""))
    assert wins(None, None) and not wins(None, Version(0, ""))


def test_tombstone_conditions_compare_the_normalised_tuple_inside_dynamodb():
    cond = older_than(Version(10, "b"), A)
    assert cond.values == {":ts": {"N": "10"}, ":o": {"S": "b"}}
    assert "#ts < :ts" in cond.expression and "#o < :o" in cond.expression
    assert older_than(None, A).expression == "attribute_not_exists(#ts)"
    assert recorded_version({"ts": {"N": "42"}, "origin": {"S": "x"}}, VersionAttrs("ts", "origin")) == Version(42, "x")


def test_the_fast_path_compares_each_stamp_form_in_its_own_unit():
    cond = beats_stored(Version(1_796_180_270_866_811, "b"), A)
    assert cond.expression == "attribute_not_exists(#ts) OR #ts < :sec OR (#ts >= :msmin AND #ts < :ms)"
    assert cond.values == {
        ":sec": {"N": "1796180270.866811"},
        ":msmin": {"N": "100000000000"},
        ":ms": {"N": "1796180270866.811"},
    }
    assert cond.names == {"#ts": A.ts}  # DynamoDB refuses unused names
    assert beats_stored(None, A).expression == "attribute_not_exists(#ts)"


def test_the_guard_is_the_exact_raw_stamp_read_so_the_state_it_was_read_from_satisfies_it():
    stored = {"pk": {"S": "k"}, A.ts: {"N": SAMPLE}, A.origin: {"S": "cn-north-1"}}
    guard = unchanged(stored, A)
    assert guard.expression == "#ts = :ts AND #o = :o"
    assert guard.values == {":ts": {"N": SAMPLE}, ":o": {"S": "cn-north-1"}}
    bare = unchanged({"pk": {"S": "k"}, A.ts: {"S": "yesterday"}}, A)
    assert bare.expression == "#ts = :ts AND attribute_not_exists(#o)"
    assert unchanged(None, A).expression == "attribute_not_exists(#ts) AND attribute_not_exists(#o)"


def test_a_delete_is_newer_than_the_item_it_removed():
    # the event time has second precision: the delete must still beat the item's own stamp, by one microsecond
    assert delete_version(stamped(1_796_180_270_500, "a"), 1_796_180_270_000, A, "b") == Version(
        1_796_180_270_500_001, "b"
    )
    assert delete_version(stamped(SAMPLE, "a"), 1_796_180_000_000, A, "b") == Version(1_796_180_270_866_812, "b")
    assert delete_version(stamped(5, "a"), 9_000, A, None) == Version(9_000_000, "a")
    assert delete_version(None, 9_000, A, "b") == Version(9_000_000, "b")
