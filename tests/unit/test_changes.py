"""Parsing stream records into changes, and coalescing per key."""

import json
from pathlib import Path

import pytest

from ddb_bridge.core.changes import Op, coalesce, from_stream_record
from ddb_bridge.core.errors import PermanentError
from ddb_bridge.core.settings import VersionAttrs

EVENTS = Path(__file__).resolve().parents[2] / "events"


def records(name):
    return json.loads((EVENTS / f"{name}.json").read_text())["Records"]


def test_ttl_removes_are_recognised():
    insert, remove = records("ddb_stream_ttl_remove")
    assert not from_stream_record(insert, VersionAttrs()).is_ttl
    change = from_stream_record(remove, VersionAttrs())
    assert change.op is Op.DELETE and change.is_ttl


def test_keys_are_learned_from_the_record_for_any_schema():
    hk, rk = (from_stream_record(r, VersionAttrs()) for r in records("ddb_stream_binary_key"))
    assert hk.key["hk"] == {"B": b"\x00\xffkey"} and hk.key_id != rk.key_id
    numeric = from_stream_record(records("ddb_stream_numeric_key")[0], VersionAttrs())
    assert numeric.key == {"id": {"N": "98765432109876543210987654321098765432"}}


def test_malformed_records_are_permanent_errors_with_a_reason():
    _, bad, missing, _ = records("ddb_stream_malformed")
    reasons = []
    for record in (bad, missing):
        with pytest.raises(PermanentError) as err:
            from_stream_record(record, VersionAttrs())
        reasons.append(err.value.reason)
    # bad base64 is a value DynamoDB would refuse; a record without Keys is not a stream record at all
    assert reasons == ["InvalidValue", "MalformedRecord"]


def test_coalescing_keeps_the_last_change_per_key_in_stream_order():
    changes = [from_stream_record(r, VersionAttrs()) for r in records("ddb_stream_hot_keys")]
    latest, dropped = coalesce(changes)
    assert dropped == 6 and len(latest) == 2
    assert latest['{"pk":{"S":"hot#1"}}'].item["n"] == {"N": "4"}
    assert latest['{"pk":{"S":"cold#1"}}'].op is Op.PUT
