"""The bidirectional side table: what each region's bridge remembers of an item, one small record per writer.

Two records per key, each written by one function only, so neither needs a condition or a transaction
(a single writer writes a key's record in order) and both go out in BatchWriteItem calls:

- `L#<key>`, written by stream_relay: the newest **local** change it versioned (`v`, `d` when it is a
  delete, `h` the digest of the local state it versioned) and `x`, the exact version the relay itself
  removed when it put a deleted state back (the echo marker of its own repairs). With application stamps it
  is written for local deletes (the tombstone) and for local writes that carry no stamp; with bridge-owned
  stamps for every local change (the item itself cannot say which version a local write has: the
  application's PutItem drops the bridge's attribute, its UpdateItem keeps a stale one).
- `P#<key>`, written by relay_applier: the newest delete replication applied (`v`), the exact versions it
  removed (`x`: echo markers, so the table stream's REMOVEs are recognised and never travel back), and
  `xh`, tokens `<digest>@<n>` of states it removed without knowing their version (a local write the relay
  had not versioned yet, an item older than the bridge): the relay matches a REMOVE of exactly that
  content to the oldest token it has not consumed, and records it as consumed in `L#` (`c`: the token and
  the sequence number of the REMOVE that took it, so a retried batch takes it again).

The echo markers are kept as the last few removed versions (`MARKERS`), so a second replicated delete of a
key does not erase the marker of a first one whose REMOVE the relay has not read yet.

A key's tombstone is the newer of the two deletes. Records expire with `TombstoneTtlDays`, which must exceed
the longest time a change can be in flight (docs/bidirectional.md#limits-read-before-going-live).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from ..core.codec import Image
from ..core.versions import Version, decode_version, encode_version

LOCAL = "L#"
PEER = "P#"
MARKERS = 8  # removed versions remembered per record: more replicated deletes of one key than the relay's lag holds
_KEY_MAX = 1024


def record_key(prefix: str, key_id: str) -> dict[str, Any]:
    """The side table's key of one record (the item key hashed only when too long for a key)."""
    if len(key_id.encode("utf-8")) > _KEY_MAX:
        key_id = "sha256:" + hashlib.sha256(key_id.encode("utf-8")).hexdigest()
    return {"pk": {"S": prefix + key_id}}


@dataclass(frozen=True)
class LocalRecord:
    """`L#`: the newest local change the relay versioned, and the version its own last repair removed."""

    version: Version | None = None
    deleted: bool = False
    digest: str | None = None  # of the local state (puts): tells that state apart from a later local write
    removed: tuple[Version, ...] = ()  # x: the relay deleted exactly these versions (echoes of its own repairs)
    consumed: tuple[str, ...] = ()  # c: `P#` tokens already matched to a REMOVE, as `<token>><sequence number>`

    def item(self, key_id: str, ttl_seconds: int) -> Image:
        """The record as stored."""
        out: Image = {**record_key(LOCAL, key_id), "expires_at": {"N": str(int(time.time()) + ttl_seconds)}}
        if self.version is not None:
            out["v"] = {"S": encode_version(self.version)}
            if self.deleted:
                out["d"] = {"BOOL": True}
        if self.digest is not None:
            out["h"] = {"S": self.digest}
        if self.removed:
            out["x"] = {"L": [{"S": encode_version(v)} for v in self.removed[-MARKERS:]]}
        if self.consumed:
            out["c"] = {"L": [{"S": t} for t in self.consumed[-MARKERS:]]}
        return out

    @classmethod
    def of(cls, item: Image | None) -> LocalRecord:
        """The record read back (an absent or unreadable one is empty)."""
        if not item:
            return cls()
        return cls(
            decode_version(_text(item, "v")),
            _flag(item, "d"),
            _text(item, "h"),
            _versions(item, "x"),
            _texts(item, "c"),
        )

    def removing(self, version: Version) -> LocalRecord:
        """The record with one more version the relay removes."""
        if version in self.removed:
            return self
        return dataclasses.replace(self, removed=(*self.removed, version)[-MARKERS:])

    def consuming(self, token: str) -> LocalRecord:
        """The record with one more `P#` token matched."""
        return dataclasses.replace(self, consumed=(*self.consumed, token)[-MARKERS:])

    @property
    def tombstone(self) -> Version | None:
        """The local delete it remembers, if its newest local change is one."""
        return self.version if self.deleted else None


@dataclass(frozen=True)
class PeerRecord:
    """`P#`: the newest delete replication applied, and exactly what it removed."""

    version: Version | None = None
    removed: tuple[Version, ...] = ()  # x
    tokens: tuple[str, ...] = ()  # xh: `<digest>@<n>` of states removed without a known version

    def item(self, key_id: str, ttl_seconds: int) -> Image:
        """The record as stored."""
        out: Image = {**record_key(PEER, key_id), "expires_at": {"N": str(int(time.time()) + ttl_seconds)}}
        if self.version is not None:
            out["v"] = {"S": encode_version(self.version)}
        if self.removed:
            out["x"] = {"L": [{"S": encode_version(v)} for v in self.removed[-MARKERS:]]}
        if self.tokens:
            out["xh"] = {"L": [{"S": h} for h in self.tokens[-MARKERS:]]}
        return out

    @classmethod
    def of(cls, item: Image | None) -> PeerRecord:
        """The record read back (an absent or unreadable one is empty)."""
        if not item:
            return cls()
        return cls(decode_version(_text(item, "v")), _versions(item, "x"), _texts(item, "xh"))

    def deleting(self, version: Version, removed: Version | None) -> PeerRecord:
        """The record of one more replicated delete (and the version it removes, if the item was there)."""
        markers = self.removed if removed is None or removed in self.removed else (*self.removed, removed)[-MARKERS:]
        newest = version if self.version is None or version > self.version else self.version
        return PeerRecord(newest, markers, self.tokens)

    def removing_content(self, content_digest: str) -> PeerRecord:
        """The record with one more token: a state of this content removed without a known version."""
        n = 1 + max(
            (int(t.rpartition("@")[2]) for t in self.tokens if t.rpartition("@")[0] == content_digest), default=0
        )
        return PeerRecord(self.version, self.removed, (*self.tokens, f"{content_digest}@{n}")[-MARKERS:])


def _text(item: Image, name: str) -> str | None:
    value = item.get(name)
    text = value.get("S") if isinstance(value, dict) else None
    return text if isinstance(text, str) else None


def _list(item: Image, name: str) -> list[Any]:
    value = item.get(name)
    inner = value.get("L") if isinstance(value, dict) else None
    return [v for v in inner if isinstance(v, dict)] if isinstance(inner, list) else []


def _texts(item: Image, name: str) -> tuple[str, ...]:
    return tuple(t for t in (v.get("S") for v in _list(item, name)) if isinstance(t, str))


def _versions(item: Image, name: str) -> tuple[Version, ...]:
    found = (decode_version(t) for t in _texts(item, name))
    return tuple(v for v in found if v is not None)


def _flag(item: Image, name: str) -> bool:
    value = item.get(name)
    return isinstance(value, dict) and value.get("BOOL") is True


@dataclass(frozen=True)
class SideTable:
    """The side table of one region (its name and how long records live)."""

    table: str
    ttl_seconds: int

    def keys_of(self, key_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The `L#` and `P#` keys of an item key."""
        return record_key(LOCAL, key_id), record_key(PEER, key_id)
