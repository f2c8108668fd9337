"""Packs: the relay's wire format, several changes per Kinesis record, compressed.

A Kinesis record's data is either `0x01 + zlib(JSON)` (packed, the default) or plain JSON (a pack
written with compression off, as the one-change-per-record baseline does). The JSON is

    {"v": 1, "o": "<origin region tag>", "c": [change, ...]}
    change = {"k": Keys, "op": "P" | "D", "i": NewImage (puts only), "t": ts, "r": origin, "a": ms}

Keys and images stay in Lambda's DynamoDB JSON exactly as the stream delivered them (binary is
base64 text once, never re-encoded). `t`/`r` are absent for an unstamped put (older than any
version); `a` is the stream record's creation time, for lag figures.

Changes are grouped by a prefix of their key hash so a pack stays on one shard, and packs are cut so
that each record stays under Kinesis's 1 MiB and each PutRecords call under 500 records and 5 MiB.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from ..core.codec import MalformedImage, decode_image
from ..core.keys import key_id, partition_key
from ..core.versions import Version

PACK_FORMAT = 1
ZLIB_MARK = b"\x01"
MAX_RECORD_BYTES = 1024 * 1024  # data + partition key, per Kinesis record
MAX_CALL_RECORDS = 500
MAX_CALL_BYTES = 5 * 1024 * 1024
_HEADROOM = 2048  # the pack envelope and the partition key


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
        """Parse and check one pack entry; MalformedPack when it is not a valid change."""
        try:
            keys = entry["k"]
            ident = key_id(keys)
            op = entry["op"]
            if op not in ("P", "D"):
                raise MalformedPack(f"unknown op {op!r}")
            image = entry.get("i")
            if op == "P":
                if not isinstance(image, dict):
                    raise MalformedPack("a put without its image")
                decode_image(image)  # validates every type tag and base64 value
                if any(image.get(name) != value for name, value in keys.items()):
                    raise MalformedPack("the image does not hold the change's key")
            version = None
            if "t" in entry:
                if not isinstance(entry["t"], int) or not isinstance(entry.get("r"), str):
                    raise MalformedPack("version must be an integer ts and a string origin")
                version = Version(entry["t"], entry["r"])
            elif op == "D":
                raise MalformedPack("a delete without a version")
            return cls(ident, keys, op, image if op == "P" else None, version, int(entry.get("a", 0)))
        except (KeyError, TypeError, ValueError, MalformedImage) as exc:
            if isinstance(exc, MalformedPack):
                raise
            raise MalformedPack(f"malformed change: {exc}") from exc


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


def decode(data: bytes) -> Pack:
    """A record's data back into changes; MalformedPack for anything else."""
    try:
        if data[:1] == ZLIB_MARK:
            data = zlib.decompress(data[1:])
        body = json.loads(data.decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise MalformedPack(f"not a pack: {exc}") from exc
    if not isinstance(body, dict) or body.get("v") != PACK_FORMAT or not isinstance(body.get("c"), list):
        raise MalformedPack(f"not a version-{PACK_FORMAT} pack")
    if not isinstance(body.get("o"), str) or not body["o"]:
        raise MalformedPack("a pack without its origin")
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
