"""Packs: the relay's wire format, several changes per Kinesis record, compressed.

A Kinesis record's data is either `0x01 + zlib(JSON)` (packed, the default) or plain JSON (a pack
written with compression off, as the one-change-per-record baseline does). The JSON is

    {"v": 3, "o": "<origin region tag>", "c": [change, ...]}
    change = {"k": Keys, "op": "P" | "D", "i": NewImage (puts only), "t": ts, "r": origin, "s": seq,
              "n": rank, "a": ms}

Keys and images stay in Lambda's DynamoDB JSON exactly as the stream delivered them (binary is
base64 text once, never re-encoded), without the bridge's own attribute (the applier sets it). Every
change carries its version (`core.versions`): `t` in microseconds, `r` its origin, `s` the stream
sequence number as decimal text (absent: 0), `n` its rank (absent: 1; 0 for the bridge's version of a
write without an application stamp); `a` is the stream record's creation time in milliseconds, for
lag figures.

What arrives from the other side is hostile until checked: the inflated size is bounded while it
inflates (a 300 KB record could otherwise become ~1 GB in memory), and every field of the pack is
checked for type and range, every key and image as DynamoDB would check it (`core.validate`).

Changes are grouped by a prefix of their key hash (a bucket); a pack's partition key and explicit hash
key are its bucket's, so every change of a key reaches the same shard and the same lane of the applier's
ParallelizationFactor: no two invocations apply one key at once. Packs are cut so that each record
stays under Kinesis's 1 MiB and each PutRecords call under 500 records and 5 MiB.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from ..core import validate
from ..core.codec import MalformedImage
from ..core.keys import key_id, partition_key
from ..core.versions import Version

PACK_FORMAT = 3
ZLIB_MARK = b"\x01"
DEFAULT_MAX_PACK_BYTES = 8 * 1024 * 1024  # inflated JSON of one record; RelayPackBytes plus one large change
MAX_CHANGES = 50_000
MAX_TS = 10**21  # microseconds: a stamp below 10^18 ms
MAX_APPROX_MS = 10**14
TAG_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_FIELDS = frozenset({"k", "op", "i", "t", "r", "s", "n", "a"})
_SEQ_RE = re.compile(r"^\d{1,40}$")
MAX_RECORD_BYTES = 1024 * 1024  # data + partition key, per Kinesis record
MAX_CALL_RECORDS = 500
MAX_CALL_BYTES = 5 * 1024 * 1024
_HEADROOM = 2048  # the pack envelope and the partition key


def _safe(exc: Exception) -> str:
    """An exception's text when it is ours (never quoting a value), else only its type."""
    return str(exc) if isinstance(exc, (MalformedPack, MalformedImage)) else type(exc).__name__


class MalformedPack(ValueError):
    """Kinesis data that is not a pack this version understands: the record is poison (parked whole)."""


@dataclass(frozen=True)
class WireChange:
    """One change as it travels: Lambda-JSON keys and image, op, version."""

    key_id: str
    keys: dict[str, Any]
    op: str  # "P" or "D"
    image: dict[str, Any] | None
    version: Version
    approx_ms: int
    item: dict[str, Any] | None = field(default=None, compare=False, repr=False)  # the image decoded (client form)

    def to_json(self) -> dict[str, Any]:
        """The change's entry in a pack."""
        out: dict[str, Any] = {"k": self.keys, "op": self.op, "a": self.approx_ms}
        if self.image is not None:
            out["i"] = self.image
        out["t"] = self.version.ts
        out["r"] = self.version.origin
        if self.version.seq:
            out["s"] = str(self.version.seq)
        if self.version.rank != 1:
            out["n"] = self.version.rank
        return out

    @classmethod
    def from_json(cls, entry: Any) -> WireChange:
        """Parse and check one pack entry; MalformedPack when any field is not what it must be."""
        if not isinstance(entry, dict):
            raise MalformedPack("a change must be a JSON object")
        unknown = set(entry) - _FIELDS
        if unknown:
            raise MalformedPack(f"a change has unknown fields ({len(unknown)})")
        try:
            keys = entry["k"]
            validate.key(keys)
            ident = key_id(keys)
            op = entry["op"]
            if op not in ("P", "D"):
                raise MalformedPack("op must be P or D")
            image = entry.get("i")
            item = None
            if op == "P":
                if not isinstance(image, dict):
                    raise MalformedPack("a put without its image")
                item = validate.image(image, keys)  # every type tag, number, base64 value, size, and the key
            elif "i" in entry:
                raise MalformedPack("a delete with an image")
            ts, origin = entry.get("t"), entry.get("r")
            if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts < MAX_TS:
                raise MalformedPack("t must be a whole number of microseconds")
            if not isinstance(origin, str) or not TAG_RE.match(origin):
                raise MalformedPack("r must be an origin tag (1-64 of A-Z a-z 0-9 _ . : -)")
            seq = entry.get("s", "0")
            if not isinstance(seq, str) or not _SEQ_RE.match(seq):
                raise MalformedPack("s must be a sequence number (decimal text, at most 40 digits)")
            rank = entry.get("n", 1)
            if isinstance(rank, bool) or rank not in (0, 1):
                raise MalformedPack("n must be 0 or 1")
            version = Version(ts, origin, int(seq), rank)
            approx = entry.get("a", 0)
            if isinstance(approx, bool) or not isinstance(approx, int) or not 0 <= approx < MAX_APPROX_MS:
                raise MalformedPack("a must be a whole number of milliseconds")
            return cls(ident, keys, op, image if op == "P" else None, version, approx, item)
        except validate.InvalidValue as exc:
            raise MalformedPack(f"a change DynamoDB would refuse: {exc}") from exc
        except (KeyError, TypeError, ValueError, MalformedImage) as exc:
            if isinstance(exc, MalformedPack):
                raise
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else _safe(exc)
            raise MalformedPack(f"malformed change: {detail}") from exc


@dataclass(frozen=True)
class Pack:
    """What one Kinesis record carries."""

    origin: str
    changes: list[WireChange]


def _entry(change: WireChange) -> bytes:
    """One change's JSON in a pack (compact, UTF-8)."""
    return json.dumps(change.to_json(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _body(origin: str, changes: list[WireChange], entries: list[bytes] | None = None) -> bytes:
    """A pack's JSON: `{"v":..,"o":..,"c":[..]}`, from the changes' entries when they were encoded already."""
    head = json.dumps({"v": PACK_FORMAT, "o": origin}, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return head[:-1] + b',"c":[' + b",".join(entries or [_entry(c) for c in changes]) + b"]}"


def encode(origin: str, changes: list[WireChange], *, compress: bool = True) -> bytes:
    """One record's data."""
    body = _body(origin, changes)
    return ZLIB_MARK + zlib.compress(body, 6) if compress else body


def inflate(data: bytes, max_bytes: int) -> bytes:
    """A record's JSON, inflated while it stays within `max_bytes` (streamed: never more in memory)."""
    if data[:1] != ZLIB_MARK:
        if len(data) > max_bytes:
            raise MalformedPack(f"a pack over {max_bytes} bytes")
        return data
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(data[1:], max_bytes + 1)
    except zlib.error as exc:
        raise MalformedPack(f"not a pack: {exc}") from exc
    if len(body) > max_bytes or inflater.unconsumed_tail:
        raise MalformedPack(f"a pack that inflates past {max_bytes} bytes (RELAY_MAX_PACK_BYTES)")
    if not inflater.eof or inflater.unused_data:
        raise MalformedPack("not a pack: a truncated or padded zlib stream")
    return body


def decode(data: bytes, *, max_bytes: int = DEFAULT_MAX_PACK_BYTES) -> Pack:
    """A record's data back into changes; MalformedPack for anything else."""
    try:
        body = json.loads(inflate(data, max_bytes).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, MalformedPack):
            raise
        raise MalformedPack(f"not a pack: {type(exc).__name__}") from exc
    if not isinstance(body, dict) or set(body) != {"v", "o", "c"} or body["v"] != PACK_FORMAT:
        raise MalformedPack(f"not a version-{PACK_FORMAT} pack")
    if not isinstance(body["o"], str) or not TAG_RE.match(body["o"]):
        raise MalformedPack("a pack's origin must be a region tag (1-64 of A-Z a-z 0-9 _ . : -)")
    if not isinstance(body["c"], list) or not 1 <= len(body["c"]) <= MAX_CHANGES:
        raise MalformedPack(f"a pack must hold 1 to {MAX_CHANGES} changes")
    return Pack(body["o"], [WireChange.from_json(entry) for entry in body["c"]])


@dataclass
class OutRecord:
    """One Kinesis record to put, and the keys of the changes inside it."""

    data: bytes
    partition_key: str
    explicit_hash_key: str
    key_ids: list[str] = field(default_factory=list)
    raw_bytes: int = 0  # the JSON before compression

    @property
    def size(self) -> int:
        """What the record counts against Kinesis's limits (data + partition key)."""
        return len(self.data) + len(self.partition_key.encode("utf-8"))

    def entry(self) -> dict[str, Any]:
        """The PutRecords entry."""
        return {"Data": self.data, "PartitionKey": self.partition_key, "ExplicitHashKey": self.explicit_hash_key}


def _hash(ident: str) -> str:
    return partition_key(ident)  # 128-bit hex


def bucket_of(key_id: str, buckets: int) -> int:
    """The key-hash bucket of an item key: its pack's partition key, shard and lane."""
    return int(_hash(key_id)[:8], 16) * max(1, buckets) >> 32


def _bucket_keys(bucket: int, buckets: int) -> tuple[str, str]:
    """A bucket's partition key and explicit hash key (the middle of its slice of Kinesis's 128-bit hash space)."""
    width = (1 << 128) // max(1, buckets)
    return f"ddbb-{bucket:03d}-of-{max(1, buckets):03d}", str(bucket * width + width // 2)


def build_records(
    origin: str, changes: list[WireChange], *, compress: bool = True, pack_bytes: int = 256 * 1024, buckets: int = 8
) -> list[OutRecord]:
    """Pack changes into records: grouped by key-hash bucket, cut at `pack_bytes` of JSON, under 1 MiB.

    Each record's partition key and explicit hash key are its bucket's, so a key always maps to the same
    shard and the same lane. `pack_bytes=0` (or compression off with `pack_bytes=1`) gives one change per record.
    """
    groups: dict[int, list[WireChange]] = {}
    for change in changes:
        groups.setdefault(bucket_of(change.key_id, buckets), []).append(change)
    out: list[OutRecord] = []
    for bucket in sorted(groups):
        chunk: list[WireChange] = []
        entries: list[bytes] = []
        size = 0
        keys = _bucket_keys(bucket, buckets)
        for change in groups[bucket]:
            entry = _entry(change)  # encoded once: sized here, joined into the record's body below
            if chunk and size + len(entry) > pack_bytes:
                out.extend(_records_of(origin, chunk, compress, keys, entries))
                chunk, entries, size = [], [], 0
            chunk.append(change)
            entries.append(entry)
            size += len(entry) + 1
        if chunk:
            out.extend(_records_of(origin, chunk, compress, keys, entries))
    return out


def _records_of(
    origin: str, changes: list[WireChange], compress: bool, keys: tuple[str, str], entries: list[bytes]
) -> list[OutRecord]:
    """One record for these changes (`entries`: their encoded JSON), split in halves while over Kinesis's limit."""
    body = _body(origin, changes, entries)
    data = ZLIB_MARK + zlib.compress(body, 6) if compress else body
    head, explicit = keys
    if len(data) + len(head) > MAX_RECORD_BYTES - _HEADROOM and len(changes) > 1:
        half = len(changes) // 2
        return _records_of(origin, changes[:half], compress, keys, entries[:half]) + _records_of(
            origin, changes[half:], compress, keys, entries[half:]
        )
    return [OutRecord(data, head, explicit, [c.key_id for c in changes], len(body))]


def calls(records: list[OutRecord]) -> list[list[int]]:
    """Indices of `records` grouped into PutRecords calls of at most 500 records and 5 MiB."""
    out: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index, record in enumerate(records):
        if current and (len(current) >= MAX_CALL_RECORDS or size + record.size > MAX_CALL_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(index)
        size += record.size
    if current:
        out.append(current)
    return out
