"""Every Kinesis-shaped file in events/ through relay_applier (Singapore), as `sam local invoke -e` would.

The oracle decodes the records itself (base64, zlib, JSON), independently of the layer: a record is
poison if it does not decode to a version-3 pack from another region (within RELAY_MAX_PACK_BYTES, with
values DynamoDB takes, fields of their types) or holds a change stamped beyond the clock skew; each key
ends at its highest version, compared (rank, ts, origin, seq); delivery order is ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.bidirectional import TwoRegions
from harness.events import EVENTS, load, oracle_value
from harness.lww import canonical_item
from harness.moto_server import LocalAws
from harness.world import canonical_key

KINESIS_EVENTS = sorted(EVENTS.glob("kinesis_*.json"))


MAX_PACK_BYTES = 8 * 1024 * 1024  # RELAY_MAX_PACK_BYTES' default
SKEW_US = 300 * 1_000_000  # MAX_CLOCK_SKEW_SECONDS' default
FIELDS = {"k", "op", "i", "t", "r", "s", "n", "a"}


def pack_of(record: dict) -> dict | None:
    """The record's pack if every part of it is what a relay sends, else None (poison)."""
    try:
        data = base64.b64decode(record["kinesis"]["data"], validate=True)
        raw = zlib.decompress(data[1:]) if data[:1] == b"\x01" else data
        if len(raw) > MAX_PACK_BYTES:
            return None
        body = json.loads(raw)
        if not isinstance(body, dict) or body.get("v") != 3 or not body.get("o"):
            return None
        for c in body["c"]:
            if set(c) - FIELDS or isinstance(c.get("t"), bool) or not isinstance(c.get("t"), int):
                return None
            for value in [*c["k"].values(), *(c.get("i") or {}).values()]:
                oracle_value(value)
    except (binascii.Error, zlib.error, ValueError, KeyError, TypeError):
        return None
    return body


def oracle(event: dict, tag: str) -> tuple[dict[str, dict], int]:
    """The table after the event (from empty), and how many records must be parked."""
    best: dict[str, tuple[tuple, dict | None]] = {}
    parked = 0
    for record in event["Records"]:
        pack = pack_of(record)
        if pack is None or pack["o"] == tag or any(c.get("r") == tag for c in pack["c"]):
            parked += 1
            continue
        if any(c.get("t", 0) > time.time() * 1_000_000 + SKEW_US for c in pack["c"]):
            parked += 1  # stamped too far ahead: it would win forever (the events hold it alone in its record)
            continue
        for c in pack["c"]:
            order = (c.get("n", 1), c["t"], c["r"], int(c.get("s", "0")))
            key = canonical_key({k: oracle_value(v) for k, v in c["k"].items()})
            if key not in best or order > best[key][0]:
                best[key] = (order, None if c["op"] == "D" else {k: oracle_value(v) for k, v in c["i"].items()})
    return {k: canonical_item(item) for k, (_, item) in best.items() if item is not None}, parked


def schema_of(event: dict) -> list[tuple[str, str]]:
    for record in event["Records"]:
        pack = pack_of(record)
        if pack and pack["c"]:
            return [(name, next(iter(value))) for name, value in pack["c"][0]["k"].items()]
    raise ValueError("no decodable pack")


@pytest.fixture(scope="module")
def world(local_aws: LocalAws) -> Iterator[TwoRegions]:
    local_aws.reset()
    yield TwoRegions(name="applier-events", tombstone_ttl=False)


@pytest.mark.parametrize("path", KINESIS_EVENTS, ids=lambda p: Path(p).stem)
def test_relay_applier_with_every_sample_event(world, path):
    # GIVEN Singapore's applier, warm, over an empty table with the changes' key schema
    event = load(path)
    world.reset_tables(schema_of(event))
    world.b.clear_parked()
    # WHEN the handler is invoked with the file
    response = world.b.applier.invoke(event)
    # THEN nothing is retried, the table equals the oracle, and poison records are parked whole
    expected, parked = oracle(event, world.b.tag)
    assert response == {"batchItemFailures": []}
    assert {k: canonical_item(v) for k, v in world.b.data().items()} == expected
    messages = world.b.parked()
    assert len(messages) == parked
    assert all(m["record"] in event["Records"] for m in messages)
    # AND a second delivery changes nothing: every change is now stale or a counted duplicate
    world.b.applier_reports.clear()
    assert world.b.applier.invoke(event) == {"batchItemFailures": []}
    assert {k: canonical_item(v) for k, v in world.b.data().items()} == expected
    assert sum(r.applied for r in world.b.applier_reports) == 0


def test_the_kinesis_sample_events_cover_every_case():
    names = {p.stem for p in KINESIS_EVENTS}
    assert names >= {
        "kinesis_pack",
        "kinesis_plain_json",
        "kinesis_out_of_order_duplicates",
        "kinesis_binary_composite_key",
        "kinesis_malformed",
        "kinesis_malformed_values",
    }
