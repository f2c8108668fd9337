"""Item keys learned from each record (any schema: hash or hash + range, S, N or B)."""

from __future__ import annotations

import hashlib
import json

from .codec import Image, MalformedImage

_KEY_TYPES = ("S", "N", "B")


def key_id(wire_keys: Image) -> str:
    """A canonical, stable identity for a key in Lambda's JSON form (binary as base64 text).

    Two records of the same item always give the same string, whatever the order of the attributes.
    """
    if not isinstance(wire_keys, dict) or not 1 <= len(wire_keys) <= 2:
        raise MalformedImage("Keys must hold one or two key attributes")
    for name, value in wire_keys.items():
        if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in _KEY_TYPES:
            raise MalformedImage(f"key attribute {name!r} must be of type S, N or B")
    return json.dumps(wire_keys, sort_keys=True, separators=(",", ":"))


def shown(identity: str, mode: str = "plain") -> str:
    """A key as logs and error texts show it (LOG_KEYS): as it is, or a short hash that still tells keys apart."""
    if mode == "hash":
        return "sha256:" + hashlib.sha256(identity.encode("utf-8")).hexdigest()[:20]
    return identity[:300]


def partition_key(identity: str) -> str:
    """A Kinesis partition key for an item: a short hash of its key identity (keeps per-item order)."""
    return hashlib.blake2b(identity.encode("utf-8"), digest_size=16).hexdigest()


def project_key(image: Image, key_names: tuple[str, ...]) -> Image:
    """The key attributes of a full item."""
    try:
        return {name: image[name] for name in key_names}
    except KeyError as exc:
        raise MalformedImage(f"item lacks key attribute {exc.args[0]!r}") from None
