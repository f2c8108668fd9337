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

import base64
import hashlib
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from ..core.codec import Image
from ..core.versions import Version

MARKER_PREFIX = "echo#"


def _number(text: str) -> str:
    """DynamoDB stores numbers normalised (1.50 -> 1.5, 1E2 -> 100): compare them the same way."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return text
    return "0" if value == 0 else format(value.normalize(), "f")


def _binary(value: Any) -> str:
    raw = bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else base64.b64decode(value)
    return base64.b64encode(raw).decode("ascii")


def _canonical_value(value: dict[str, Any]) -> Any:
    ((tag, inner),) = value.items()
    if tag == "N":
        return {"N": _number(inner)}
    if tag == "B":
        return {"B": _binary(inner)}
    if tag == "SS":
        return {"SS": sorted(inner)}
    if tag == "NS":
        return {"NS": sorted(_number(v) for v in inner)}
    if tag == "BS":
        return {"BS": sorted(_binary(v) for v in inner)}
    if tag == "M":
        return {"M": {k: _canonical_value(v) for k, v in sorted(inner.items())}}
    if tag == "L":
        return {"L": [_canonical_value(v) for v in inner]}
    return {tag: inner}


def digest(image: Image) -> str:
    """A content digest of an item, equal for the client form (bytes) and Lambda's JSON (base64).

    Sets are order-free and numbers normalised as DynamoDB stores them, so the digest of what was
    written equals the digest of what the stream later shows.
    """
    canonical = {name: _canonical_value(value) for name, value in sorted(image.items())}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


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
