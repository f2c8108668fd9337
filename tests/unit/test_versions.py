"""Versions: (ts, origin) compared as a tuple; unversioned is oldest; malformed never crashes."""

from ddb_bridge.core.changes import delete_version
from ddb_bridge.core.settings import VersionAttrs
from ddb_bridge.core.versions import Version, is_newer, older_than, version_of

A = VersionAttrs()


def stamped(ts, origin):
    return {A.ts: {"N": str(ts)}, A.origin: {"S": origin}}


def test_ties_on_ts_are_broken_by_origin_the_same_way_on_both_sides():
    a, b = Version(1000, "cn-north-1"), Version(1000, "ap-southeast-1")
    assert is_newer(a, b) and not is_newer(b, a)


def test_same_version_is_not_newer_so_a_duplicate_is_a_noop():
    assert not is_newer(Version(5, "x"), Version(5, "x"))


def test_unversioned_is_older_than_any_version():
    assert is_newer(Version(0, ""), None)
    assert not is_newer(None, Version(0, ""))
    assert not is_newer(None, None)


def test_version_of_reads_configured_attributes_and_tolerates_junk():
    attrs = VersionAttrs(ts="v_ts", origin="v_o")
    assert version_of({"v_ts": {"N": "7"}, "v_o": {"S": "r"}}, attrs) == Version(7, "r")
    assert version_of({"v_ts": {"S": "7"}}, attrs) is None
    assert version_of({"v_ts": {"N": "1.5"}}, attrs) is None
    assert version_of({"v_ts": {"N": "7"}}, attrs) == Version(7, "")
    assert version_of(None, attrs) is None


def test_condition_compares_inside_dynamodb_with_the_tie_break():
    cond = older_than(Version(10, "b"), A)
    assert cond.values == {":ts": {"N": "10"}, ":o": {"S": "b"}}
    assert "#ts < :ts" in cond.expression and "#o < :o" in cond.expression
    assert older_than(None, A).expression == "attribute_not_exists(#ts)"


def test_a_delete_is_newer_than_the_item_it_removed():
    # the event time has second precision: the delete must still beat the item's millisecond stamp
    assert delete_version(stamped(1_000_500, "a"), 1_000_000, A, "b") == Version(1_000_501, "b")
    assert delete_version(stamped(5, "a"), 9_000, A, None) == Version(9_000, "a")
    assert delete_version(None, 9_000, A, "b") == Version(9_000, "b")
