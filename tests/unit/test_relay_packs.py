"""The relay's wire format: packs, their limits, and what an applier refuses as poison."""

from __future__ import annotations

import base64
import json
import random
import tracemalloc
import zlib

import pytest

from ddb_bridge.core.keys import key_id
from ddb_bridge.core.versions import Version
from ddb_bridge.relay import packs
from ddb_bridge.relay.packs import MalformedPack, WireChange, build_records, calls, decode, encode


def change(i: int, *, size: int = 40, op: str = "P") -> WireChange:
    keys = {"pk": {"S": f"order#{i}"}, "sk": {"B": base64.b64encode(bytes([i % 256, 0])).decode()}}
    image = {
        **keys,
        "note": {"S": "x" * size},
        "blob": {"M": {"b": {"B": base64.b64encode(b"\x00\xff" * 4).decode()}}},
        "last_update_timestamp": {"N": str(1_700_000_000_000 + i)},
        "last_updater_region": {"S": "cn-north-1"},
    }
    version = Version(1_700_000_000_000 + i, "cn-north-1", 1100000000017454423000 + i, rank=i % 2)
    return WireChange(key_id(keys), keys, op, image if op == "P" else None, version, 5)


def test_a_pack_round_trips_and_keeps_lambda_json_as_it_is():
    # GIVEN a put with binary values (base64 text, as Lambda delivers them) and a delete
    items = [change(1), change(2, op="D")]
    for compress in (True, False):
        # WHEN packed and read back
        pack = decode(encode("cn-north-1", items, compress=compress))
        # THEN the changes are identical: binary is still the same base64 text, never encoded twice
        assert pack.origin == "cn-north-1"
        assert pack.changes == items
    assert encode("cn-north-1", items)[:1] == packs.ZLIB_MARK
    assert json.loads(encode("cn-north-1", items, compress=False))["c"][0]["i"]["sk"] == items[0].keys["sk"]


def test_packing_and_compression_cut_bytes_and_records():
    # GIVEN 200 realistic changes
    items = [change(i, size=200) for i in range(200)]
    # WHEN packed, and when sent one plain JSON record per change (the baseline)
    packed = build_records("cn-north-1", items)
    plain = build_records("cn-north-1", items, compress=False, pack_bytes=1)
    # THEN fewer records and far fewer bytes cross, and every change is in exactly one record
    assert len(plain) == 200 and len(packed) <= 8
    assert sum(r.size for r in packed) * 3 < sum(r.size for r in plain)
    assert sorted(k for r in packed for k in r.key_ids) == sorted(c.key_id for c in items)


def test_records_stay_under_kinesis_limits_and_calls_under_500_records_and_5_mib():
    # GIVEN changes that do not compress (random text) and would make packs over 1 MiB
    rng = random.Random(1)
    noisy = [
        WireChange(c.key_id, c.keys, "P", {**c.image, "noise": {"S": rng.randbytes(30_000).hex()}}, c.version, 0)
        for c in (change(i) for i in range(120))
        if c.image is not None
    ]
    records = build_records("cn-north-1", noisy, pack_bytes=4 * 1024 * 1024, buckets=1)
    # THEN each record is under 1 MiB (split as needed) and the calls respect both PutRecords limits
    assert all(r.size <= packs.MAX_RECORD_BYTES for r in records)
    assert len(records) > 1
    many = records * 300
    groups = calls(many)
    assert sorted(i for g in groups for i in g) == list(range(len(many)))
    assert all(len(g) <= 500 and sum(many[i].size for i in g) <= 5 * 1024 * 1024 for g in groups)


def test_every_change_of_a_key_goes_to_one_shard_and_one_lane():
    # GIVEN the same item changed in two batches, among other items
    first = build_records("cn-north-1", [change(7), change(1)])
    later = build_records("cn-north-1", [change(7)])
    # THEN its record gets the same partition key and hash key both times: its key-hash bucket's
    mine = next(r for r in first if change(7).key_id in r.key_ids)
    assert (mine.partition_key, mine.explicit_hash_key) == (later[0].partition_key, later[0].explicit_hash_key)
    # AND the buckets split Kinesis's 128-bit hash space evenly: a 4-shard stream puts each bucket on one shard
    hashes = sorted({int(r.explicit_hash_key) for i in range(200) for r in build_records("x", [change(i)])})
    assert len(hashes) == 8 and all(0 <= h < 2**128 for h in hashes)
    quarter = 2**128 // 4
    for i in range(200):
        (record,) = build_records("x", [change(i)])
        assert int(record.explicit_hash_key) // quarter == packs.bucket_of(change(i).key_id, 8) // 2


def _pack(*changes: dict, v: int = 3, o: str = "cn-north-1") -> bytes:
    return json.dumps({"v": v, "o": o, "c": list(changes)}).encode()


_KEY = {"pk": {"S": "a"}}
_PUT = {"k": _KEY, "op": "P", "i": {**_KEY, "n": {"N": "1"}}, "t": 1_700_000_000_000_000, "r": "cn-north-1", "a": 1}


def test_the_poison_cases_below_differ_from_a_valid_pack_only_in_their_fault():
    assert decode(_pack(_PUT)).changes[0].version == Version(1_700_000_000_000_000, "cn-north-1")
    bridge = decode(_pack({**_PUT, "s": "1" * 40, "n": 0})).changes[0].version
    assert bridge == Version(1_700_000_000_000_000, "cn-north-1", int("1" * 40), 0)


@pytest.mark.parametrize(
    "data",
    [
        b"\x01not zlib",
        zlib.compress(b"{}"),
        b"not json",
        _pack(),  # no change at all
        _pack(_PUT, v=1),  # a version-1 pack: `t` was milliseconds there
        _pack(_PUT, v=2),  # a version-2 pack (the previous relay's): drain it before upgrading
        json.dumps({"v": 3, "c": [_PUT]}).encode(),
        json.dumps({"v": 3, "o": "cn-north-1", "c": [_PUT], "extra": 1}).encode(),
        _pack(_PUT, o="no spaces allowed"),
        _pack({k: v for k, v in _PUT.items() if k != "i"}),
        _pack({"k": _KEY, "op": "D", "a": 1}),
        _pack({**_PUT, "op": "X"}),
        _pack({**_PUT, "i": {"pk": {"S": "b"}}}),
        _pack({**_PUT, "i": {**_KEY, "x": {"B": "!!"}}}),
        _pack({**_PUT, "k": {"pk": {"BOOL": True}}}),
        _pack({**_PUT, "t": "1"}),
        _pack({**_PUT, "t": True}),
        _pack({**_PUT, "t": -1}),
        _pack({**_PUT, "r": 5}),
        _pack({**_PUT, "a": 1.5}),
        _pack({**_PUT, "why": "an unknown field"}),
        _pack({**_PUT, "i": {**_KEY, "x": {"S": 5}}}),
        _pack({**_PUT, "i": {**_KEY, "x": {"NS": ["1", "1.0"]}}}),
        _pack({**_PUT, "i": {**_KEY, "x": {"N": "1" * 39}}}),
        _pack({"k": _KEY, "op": "D", "i": _PUT["i"], "t": 1, "r": "x"}),
        _pack({k: v for k, v in _PUT.items() if k != "t"}),
        _pack({**_PUT, "s": "1" * 41}),
        _pack({**_PUT, "s": 5}),
        _pack({**_PUT, "n": 2}),
        _pack({**_PUT, "n": True}),
        b"[" * 100_000,  # nesting deep enough to exhaust the parser
    ],
    ids=[
        "bad-zlib",
        "zlib-without-mark",
        "not-json",
        "no-changes",
        "version-1",
        "version-2",
        "no-origin",
        "unknown-top-field",
        "bad-origin-tag",
        "put-without-image",
        "delete-without-version",
        "unknown-op",
        "image-without-the-key",
        "bad-base64",
        "bad-key-type",
        "ts-text",
        "ts-boolean",
        "ts-negative",
        "origin-not-text",
        "approx-not-whole",
        "unknown-change-field",
        "string-tag-holding-a-number",
        "duplicate-set-elements",
        "number-past-38-digits",
        "delete-with-an-image",
        "put-without-version",
        "seq-past-40-digits",
        "seq-not-text",
        "rank-not-0-or-1",
        "rank-boolean",
        "deep-nesting",
    ],
)
def test_anything_but_a_valid_pack_is_refused_as_poison(data):
    with pytest.raises(MalformedPack):
        decode(data)


def test_a_pack_inflates_only_up_to_the_bound_never_whole_into_memory():
    # GIVEN a record a few hundred KB on the wire that inflates to 64 MB (a zip bomb)
    deflater = zlib.compressobj(9)
    chunk = b" " * (1024 * 1024)
    data = packs.ZLIB_MARK + b"".join(deflater.compress(chunk) for _ in range(64)) + deflater.flush()
    assert len(data) < 300 * 1024
    # WHEN it is decoded with a bound of 1 MB
    tracemalloc.start()
    with pytest.raises(MalformedPack, match="inflates past"):
        decode(data, max_bytes=1024 * 1024)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # THEN it was refused having held at most about the bound in memory
    assert peak < 4 * 1024 * 1024


def test_a_pack_within_the_bound_decodes_and_a_truncated_stream_is_refused():
    body = zlib.compress(_pack(_PUT))
    assert decode(packs.ZLIB_MARK + body, max_bytes=4096).changes[0].key_id == key_id(_KEY)
    with pytest.raises(MalformedPack, match="truncated"):
        decode(packs.ZLIB_MARK + body[:-4], max_bytes=4096)
    with pytest.raises(MalformedPack, match="over"):
        decode(_pack(_PUT), max_bytes=16)  # plain JSON is bounded too
