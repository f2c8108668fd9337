"""Echo markers: how a region recognises the stream records that its own replication caused.

When replication deletes an item (the applier applying a peer's delete, or the relay undoing a local
write that lost to a newer version), the table's stream emits a REMOVE like any local delete. To keep
that REMOVE from bouncing back across the border (docs/design.md#deletes), the same transaction that deletes
the item writes a marker naming the exact version it removed: `(key, version)` for a stamped item,
`(key, digest of the item)` for an unstamped one. The relay drops a REMOVE iff the marker of its
OldImage exists. A local delete never has a marker, so it replicates even when the peer wrote the
item last. Unstamped puts by the applier get a marker too: they carry no origin to filter on.

Markers live in the tombstone table under their own hashed keys and expire with the same TTL.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..core.canonical import digest
from ..core.codec import Image
from ..core.versions import Version

MARKER_PREFIX = "echo#"

__all__ = ["MARKER_PREFIX", "digest", "identity", "marker_key"]


def identity(version: Version | None, image: Image | None) -> str | None:
    """What a marker remembers of one removed or written item: its version, else its content.

    The image may be in either form (Lambda's JSON or the client's bytes): the digest is the same.
    None when neither is known (a REMOVE without OldImage): such a record cannot be matched.
    """
    if version is not None:
        return f"v:{version.ts}:{version.origin}"
    if image is not None:
        return f"u:{digest(image)}"
    return None


def marker_key(key_id: str, ident: str) -> dict[str, Any]:
    """The tombstone-table key of the marker for one item version (hashed: keys can be long)."""
    h = hashlib.blake2b(f"{key_id}\n{ident}".encode(), digest_size=20).hexdigest()
    return {"pk": {"S": MARKER_PREFIX + h}}
