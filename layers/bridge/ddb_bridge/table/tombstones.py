"""Tombstones of one-way replication: deleted keys and their delete versions, expiring by TTL.

Used by lww mode with a tombstone table and by a live backfill; the bidirectional relay keeps its own
records (`relay.sidetable`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from ..core.codec import Image
from ..core.settings import VersionAttrs
from ..core.versions import Version, recorded_version

TOMBSTONE_ATTRS = VersionAttrs(ts="ts", origin="origin")
_TOMBSTONE_KEY_MAX = 1024


@dataclass(frozen=True)
class Tombstones:
    """A side table of deleted keys and their delete versions, expiring by TTL (`expires_at`)."""

    table: str
    ttl_seconds: int

    @staticmethod
    def key_of(key_id: str) -> dict[str, Any]:
        """The tombstone table's key for an item key (hashed only when too long for a key)."""
        if len(key_id.encode("utf-8")) > _TOMBSTONE_KEY_MAX:
            key_id = "sha256:" + hashlib.sha256(key_id.encode("utf-8")).hexdigest()
        return {"pk": {"S": key_id}}

    def item(self, key_id: str, version: Version) -> Image:
        """The tombstone written alongside a delete (its `ts` in microseconds, the normalised unit)."""
        return {
            **self.key_of(key_id),
            "ts": {"N": str(version.ts)},
            "origin": {"S": version.origin},
            "expires_at": {"N": str(int(time.time()) + self.ttl_seconds)},
        }

    def get(self, client: Any, key_id: str) -> Version | None:
        """The delete version remembered for a key, read consistently; None when there is none."""
        found = client.get_item(TableName=self.table, Key=self.key_of(key_id), ConsistentRead=True).get("Item")
        return recorded_version(found, TOMBSTONE_ATTRS)
