"""Packs: the relay's wire format, several changes per Kinesis record, compressed.

A Kinesis record's data is either `0x01 + zlib(JSON)` (packed, the default) or plain JSON (a pack
written with compression off, as the one-change-per-record baseline does). The JSON is

    {"v": 2, "o": "<origin region tag>", "c": [change, ...]}
    change = {"k": Keys, "op": "P" | "D", "i": NewImage (puts only), "t": ts, "r": origin, "a": ms}

Keys and images stay in Lambda's DynamoDB JSON exactly as the stream delivered them (binary is
base64 text once, never re-encoded). `t` is the normalised version in microseconds (`core.versions`),
`r` its origin; both are absent for an unstamped put (older than any version); `a` is the stream
record's creation time in milliseconds, for lag figures.

What arrives from the other side is hostile until checked: the inflated size is bounded while it
inflates (a 300 KB record could otherwise become ~1 GB in memory), and every field of the pack is
checked for type and range, every key and image as DynamoDB would check it (`core.validate`).

Changes are grouped by a prefix of their key hash so a pack stays on one shard, and packs are cut so
that each record stays under Kinesis's 1 MiB and each PutRecords call under 500 records and 5 MiB.
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

PACK_FORMAT = 2
ZLIB_MARK = b"\x01"
DEFAULT_MAX_PACK_BYTES = 8 * 1024 * 1024  # inflated JSON of one record; RelayPackBytes plus one large change
MAX_CHANGES = 50_000
MAX_TS = 10**21  # microseconds: a stamp below 10^18 ms
MAX_APPROX_MS = 10**14
TAG_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_FIELDS = frozenset({"k", "op", "i", "t", "r", "a"})
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
    version: Version | None
    approx_ms: int

    def to_json(self) -> dict[str, Any]:
        """The change's entry in a pack."""
        out: dict[str, Any] = {"k": self.keys, "op": self.op, "a": self.approx_ms}
        if self.image is not None:
            out["i"] = self.image
        if self.version is not None:
            out["t"] = self.version.ts
            out["r"] = self.version.origin
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
            if op == "P":
                if not isinstance(image, dict):
                    raise MalformedPack("a put without its image")
                validate.image(image, keys)  # every type tag, number, base64 value, size, and the key
            elif "i" in entry:
                raise MalformedPack("a delete with an image")
            version = None
            if "t" in entry or "r" in entry:
                ts, origin = entry.get("t"), entry.get("r")
                if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts < MAX_TS:
                    raise MalformedPack("t must be a whole number of microseconds")
                if not isinstance(origin, str) or not TAG_RE.match(origin):
                    raise MalformedPack("r must be an origin tag (1-64 of A-Z a-z 0-9 _ . : -)")
                version = Version(ts, origin)
            elif op == "D":
                raise MalformedPack("a delete without a version")
            approx = entry.get("a", 0)
            if isinstance(approx, bool) or not isinstance(approx, int) or not 0 <= approx < MAX_APPROX_MS:
                raise MalformedPack("a must be a whole number of milliseconds")
            return cls(ident, keys, op, image if op == "P" else None, version, approx)
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


def _body(origin: str, changes: list[WireChange]) -> bytes:
    doc = {"v": PACK_FORMAT, "o": origin, "c": [c.to_json() for c in changes]}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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
    return partition_key(ident)  # 128-bit hex: also a valid ExplicitHashKey once read as an integer


def build_records(
    origin: str, changes: list[WireChange], *, compress: bool = True, pack_bytes: int = 256 * 1024, buckets: int = 8
) -> list[OutRecord]:
    """Pack changes into records: grouped by key-hash bucket, cut at `pack_bytes` of JSON, under 1 MiB.

    Each record's partition key and explicit hash key come from its first change's item key, so a
    key always maps to the same region of the hash space (the same shard, while shards are stable).
    `pack_bytes=0` (or compression off with `pack_bytes=1`) gives one change per record.
    """
    groups: dict[int, list[WireChange]] = {}
    for change in changes:
        bucket = int(_hash(change.key_id)[:8], 16) * max(1, buckets) >> 32
        groups.setdefault(bucket, []).append(change)
    out: list[OutRecord] = []
    for bucket in sorted(groups):
        chunk: list[WireChange] = []
        size = 0
        for change in groups[bucket]:
            entry_size = len(json.dumps(change.to_json(), separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
            if chunk and size + entry_size > pack_bytes:
                out.extend(_records_of(origin, chunk, compress))
                chunk, size = [], 0
            chunk.append(change)
            size += entry_size + 1
        if chunk:
            out.extend(_records_of(origin, chunk, compress))
    return out


def _records_of(origin: str, changes: list[WireChange], compress: bool) -> list[OutRecord]:
    """One record for these changes, split in halves while it would pass Kinesis's record limit."""
    body = _body(origin, changes)
    data = ZLIB_MARK + zlib.compress(body, 6) if compress else body
    head = _hash(changes[0].key_id)
    if len(data) + len(head) > MAX_RECORD_BYTES - _HEADROOM and len(changes) > 1:
        half = len(changes) // 2
        return _records_of(origin, changes[:half], compress) + _records_of(origin, changes[half:], compress)
    return [OutRecord(data, head, str(int(head, 16)), [c.key_id for c in changes], len(body))]


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
