"""Every file in events/ through table_replicator, as `sam local invoke -e` would, against an oracle.

The oracle is written independently of the layer's codec: plain base64 decoding of Lambda's JSON,
records applied one by one in stream order.
"""

from __future__ import annotations

import pytest

from harness.events import key_schema_of, load, oracle_value, stream_events
from harness.lambdas import LocalFunction
from harness.world import canonical_key, one_way_world, scan_all


def oracle(event: dict, replicate_ttl: bool) -> tuple[dict, int]:
    """Expected target items after the event, and how many records must be parked."""
    state: dict = {}
    parked = 0
    for record in event["Records"]:
        body = record.get("dynamodb", {})
        try:
            keys = {k: oracle_value(v) for k, v in body["Keys"].items()}
            image = {k: oracle_value(v) for k, v in body["NewImage"].items()} if "NewImage" in body else None
            if any(not next(iter(v.values())) for v in keys.values()):
                raise ValueError("an empty key value")
            if image is not None and any(image.get(k) != v for k, v in keys.items()):
                raise ValueError("the image does not hold the key")
        except Exception:  # noqa: BLE001 - malformed in the oracle's eyes too
            parked += 1
            continue
        if record["eventName"] == "REMOVE":
            is_ttl = (record.get("userIdentity") or {}).get("type") == "Service"
            if replicate_ttl or not is_ttl:
                state.pop(canonical_key(keys), None)
        else:
            state[canonical_key(keys)] = image
    return state, parked


@pytest.mark.parametrize("replicate_ttl", [True, False])
@pytest.mark.parametrize("path", stream_events(), ids=lambda p: p.stem)
def test_table_replicator_with_every_sample_event(aws, path, replicate_ttl):
    # GIVEN a target table with the event's key schema
    event = load(path)
    world = one_way_world(key_schema_of(event))
    fn = LocalFunction("table_replicator", world.replicator_env(REPLICATE_TTL_DELETES=str(replicate_ttl).lower()))
    # WHEN the handler is invoked with the file, as `sam local invoke -e` would
    response = fn.invoke(event)
    # THEN nothing is retried, the target equals the oracle, and malformed records are parked whole
    expected, parked = oracle(event, replicate_ttl)
    assert response == {"batchItemFailures": []}
    assert scan_all(world.target, world.target_table) == expected
    assert len(world.parked()) == parked
    # AND a second delivery of the same event (at-least-once) changes nothing
    assert fn.invoke(event) == {"batchItemFailures": []}
    assert scan_all(world.target, world.target_table) == expected


def test_sample_events_cover_the_cases_the_runbook_names():
    names = {p.stem for p in stream_events()}
    assert {
        "ddb_stream_insert",
        "ddb_stream_modify",
        "ddb_stream_remove",
        "ddb_stream_ttl_remove",
        "ddb_stream_nested_binary",
        "ddb_stream_composite_key",
        "ddb_stream_numeric_key",
        "ddb_stream_binary_key",
        "ddb_stream_malformed",
        "ddb_stream_malformed_values",
        "ddb_stream_sample_stamps",
    } <= names
