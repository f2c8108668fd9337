"""Every stream-shaped file in events/ through stream_relay (Beijing), as `sam local invoke -e` would.

What crosses the border is read back from Singapore's Kinesis stream and compared with an oracle
written from the rules, independently of the layer: a record is poison if its keys or images do not
decode; a put stamped by another region is replication's own (dropped); a TTL delete follows the
setting; of each key's remaining changes only the newest crosses (a delete wins a tie), unless the
region already held a newer version (then nothing crosses and the write is undone locally).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Iterator
from decimal import ROUND_FLOOR, Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest

from harness.bidirectional import TwoRegions
from harness.events import EVENTS, key_schema_of, load, stream_events
from harness.moto_server import LocalAws

RELAY_EVENTS = sorted(EVENTS.glob("relay_*.json"))
TS, ORIGIN = "last_update_timestamp", "last_updater_region"


def decodes(value: Any) -> bool:
    """Independent check that a Lambda-JSON attribute value is one DynamoDB takes (the cases the events hold)."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((tag, inner),) = value.items()
    try:
        if tag == "B":
            base64.b64decode(inner, validate=True)
        elif tag == "BS":
            return len(inner) > 0 and len({base64.b64decode(v, validate=True) for v in inner}) == len(inner)
        elif tag == "M":
            return all(decodes(v) for v in inner.values())
        elif tag == "L":
            return all(decodes(v) for v in inner)
        elif tag == "N":
            digits = "".join(map(str, Decimal(inner).as_tuple().digits)).strip("0")
            return (
                isinstance(inner, str) and Decimal(inner).is_finite() and inner.strip() == inner and len(digits) <= 38
            )
        elif tag == "NS":
            numbers = {Decimal(v) for v in inner}
            return len(inner) > 0 and all(decodes({"N": v}) for v in inner) and len(numbers) == len(inner)
        elif tag == "SS":
            return len(inner) > 0 and all(isinstance(v, str) for v in inner) and len(set(inner)) == len(inner)
        elif tag == "S":
            return isinstance(inner, str)
        elif tag == "BOOL":
            return isinstance(inner, bool)
        elif tag == "NULL":
            return inner is True
        else:
            return False
    except (binascii.Error, TypeError, ValueError, ArithmeticError):
        return False
    return True


def version(image: dict | None) -> tuple[int, str] | None:
    """A stamp in microseconds: below 10^11 seconds, else milliseconds, any finer digit dropped (docs/design.md)."""
    raw = (image or {}).get(TS)
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in ("N", "S"):
        return None
    text = next(iter(raw.values()))
    if not isinstance(text, str) or not re.fullmatch(r"\+?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        return None
    with localcontext() as ctx:
        ctx.prec = 200
        number = Decimal(text)
        if number >= 10**18:
            return None
        scaled = number * (10**6 if number < 10**11 else 10**3)
        micros = int(scaled.to_integral_value(rounding=ROUND_FLOOR))
    origin = (image or {}).get(ORIGIN, {})
    return micros, origin.get("S", "") if isinstance(origin, dict) else ""


def stamped(v: tuple[int, str] | None) -> tuple | None:
    """A stamp's full version: (rank, ts, origin, seq) = (1, ts, origin, 0)."""
    return None if v is None else (1, v[0], v[1], 0)


def key_of(keys: dict) -> str:
    return json.dumps(keys, sort_keys=True, separators=(",", ":"))


def oracle(event: dict, tag: str, replicate_ttl: bool) -> tuple[dict[str, tuple[str, Any]], int]:
    """What must cross: {key: (op, [ts, origin, seq, rank])}, and how many records must be parked.

    Versions as docs/bidirectional.md states them for application stamps: a local put's stamp; a write that
    carries no stamp, or leaves the stamp it found alone, gets the bridge's version (rank 0: below every
    stamp; the stream's whole second, then the sequence number); a delete is newer than what it removed
    and no older than itself (rank 1, its sequence number last).
    """
    candidates: dict[str, list[tuple[tuple, str]]] = {}
    known: dict[str, list[tuple]] = {}
    parked = 0
    for record in event["Records"]:
        body = record.get("dynamodb", {})
        keys, new, old = body.get("Keys"), body.get("NewImage"), body.get("OldImage")
        images = [i for i in (keys, new, old) if i is not None]
        name = record.get("eventName")
        well_formed = (
            keys
            and all(decodes(v) for image in images for v in image.values())
            and all(next(iter(v.values())) != "" for v in keys.values())  # a key value may not be empty
        )
        if not well_formed or name not in ("INSERT", "MODIFY", "REMOVE") or (name != "REMOVE" and new is None):
            parked += 1
            continue
        key = key_of(keys)
        seq = int(body["SequenceNumber"])
        if old is not None and version(old) is not None:
            known.setdefault(key, []).append(stamped(version(old)))
        if name == "REMOVE":
            if (record.get("userIdentity") or {}).get("type") == "Service" and not replicate_ttl:
                continue
            us = int(float(body["ApproximateCreationDateTime"]) * 1000) * 1000
            previous = version(old)
            candidates.setdefault(key, []).append(((1, max(us, previous[0] + 1) if previous else us, tag, seq), "D"))
        elif version(new) is not None and version(new)[1] != tag and version(new) != version(old):
            known.setdefault(key, []).append(stamped(version(new)))
        elif version(new) is not None and version(new)[1] == tag and version(new) != version(old):
            candidates.setdefault(key, []).append((stamped(version(new)), "P"))
        else:
            second_us = int(float(body["ApproximateCreationDateTime"])) * 1_000_000
            candidates.setdefault(key, []).append(((0, second_us, tag, seq), "P"))
    crossing = {}
    for key, changes in candidates.items():
        top = max(changes)
        if any(k > top[0] for k in known.get(key, [])):
            continue  # the region already held something newer: undone locally, nothing crosses
        rank, ts, origin, seq = top[0]
        crossing[key] = (top[1], [ts, origin, seq, rank])
    return crossing, parked


def crossed(side, since: dict[str, str]) -> dict[str, tuple[str, Any]]:
    """The changes that arrived in this side's Kinesis stream after `since` (shard -> iterator)."""
    out: dict[str, tuple[str, Any]] = {}
    for iterator in since.values():
        for record in side.kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"]:
            data = record["Data"]
            pack = json.loads(zlib.decompress(data[1:]) if data[:1] == b"\x01" else data)
            for c in pack["c"]:
                version = [c["t"], c["r"], int(c.get("s", "0")), c.get("n", 1)]
                out[key_of(c["k"])] = ("D" if c["op"] == "D" else "P", version)
    return out


def latest(side) -> dict[str, str]:
    shards = side.kinesis.list_shards(StreamName=side.kinesis_stream)["Shards"]
    return {
        s["ShardId"]: side.kinesis.get_shard_iterator(
            StreamName=side.kinesis_stream, ShardId=s["ShardId"], ShardIteratorType="LATEST"
        )["ShardIterator"]
        for s in shards
    }


@pytest.fixture(scope="module")
def worlds(local_aws: LocalAws) -> Iterator[dict[bool, TwoRegions]]:
    """Two warm worlds (TTL deletes replicated, or not); each test re-creates the tables it needs."""
    local_aws.reset()
    yield {
        True: TwoRegions(name="relay-events-ttl", tombstone_ttl=False),
        False: TwoRegions(name="relay-events", tombstone_ttl=False, relay_env={"REPLICATE_TTL_DELETES": "false"}),
    }


@pytest.mark.parametrize("replicate_ttl", [True, False], ids=["ttl-replicated", "ttl-not-replicated"])
@pytest.mark.parametrize("path", RELAY_EVENTS + stream_events(), ids=lambda p: Path(p).stem)
def test_stream_relay_with_every_sample_event(worlds, path, replicate_ttl):
    # GIVEN Beijing's relay, warm, over a table with the event's key schema
    world = worlds[replicate_ttl]
    event = load(path)
    world.reset_tables(key_schema_of(event))
    world.a.clear_parked()
    since = latest(world.b)
    # WHEN the handler is invoked with the file
    response = world.a.relay.invoke(event)
    # THEN nothing is retried, exactly the oracle's changes crossed, and poison records are parked whole
    expected, parked = oracle(event, world.a.tag, replicate_ttl)
    assert response == {"batchItemFailures": []}
    assert crossed(world.b, since) == expected
    parked_messages = world.a.parked()
    assert len(parked_messages) == parked
    assert all(m["record"] in event["Records"] for m in parked_messages)
    # AND a second delivery (at least once) sends the same changes again, for the applier to dedupe
    since = latest(world.b)
    assert world.a.relay.invoke(event) == {"batchItemFailures": []}
    assert crossed(world.b, since) == expected


def test_the_relay_sample_events_cover_every_case():
    names = {p.stem for p in RELAY_EVENTS}
    assert names >= {
        "relay_local_insert_modify",
        "relay_echo_modify",
        "relay_local_remove",
        "relay_ttl_remove",
        "relay_unstamped_insert",
        "relay_binary_composite_key",
        "relay_malformed",
    }
