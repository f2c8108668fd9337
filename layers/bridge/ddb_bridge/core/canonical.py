"""The canonical form of an item: what makes two items "the same" whatever their spelling.

DynamoDB stores numbers normalised (1.50 and 1.5 are one number), hands sets back in any order, and
the same binary value travels as bytes (boto3) or base64 text (Lambda's JSON). The canonical form
removes all three differences, and nothing else: types stay apart ({"S": "1"} is not {"N": "1"}),
numbers keep all 38 digits, binary compares byte for byte, list order matters.

Used by the bidirectional relay (the digest in the bridge's attribute and in side records) and by verify
(equality and digests).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Collection
from decimal import Context, Decimal, InvalidOperation
from typing import Any

from .codec import Image

# DynamoDB numbers have up to 38 significant digits; the default context (28) would round them.
_EXACT = Context(prec=60)


def number(text: str) -> str:
    """A number as DynamoDB stores it: no trailing zeros, no exponent (1.50 -> 1.5, 1E2 -> 100)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return text
    return "0" if value == 0 else format(value.normalize(_EXACT), "f")


def _binary(value: Any) -> str:
    raw = bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else base64.b64decode(value)
    return base64.b64encode(raw).decode("ascii")


def canonical_value(value: dict[str, Any]) -> Any:
    """One attribute value in canonical form (JSON-serialisable)."""
    ((tag, inner),) = value.items()
    if tag == "N":
        return {"N": number(inner)}
    if tag == "B":
        return {"B": _binary(inner)}
    if tag == "SS":
        return {"SS": sorted(inner)}
    if tag == "NS":
        return {"NS": sorted(number(v) for v in inner)}
    if tag == "BS":
        return {"BS": sorted(_binary(v) for v in inner)}
    if tag == "M":
        return {"M": {k: canonical_value(v) for k, v in sorted(inner.items())}}
    if tag == "L":
        return {"L": [canonical_value(v) for v in inner]}
    return {tag: inner}


def canonical(image: Image, ignore: Collection[str] = ()) -> dict[str, Any]:
    """A whole item in canonical form, without the top-level attributes named in `ignore`."""
    return {name: canonical_value(value) for name, value in sorted(image.items()) if name not in ignore}


def digest(image: Image, ignore: Collection[str] = (), size: int = 16) -> str:
    """A content digest of an item, equal for the client form (bytes) and Lambda's JSON (base64).

    Sets are order-free and numbers normalised as DynamoDB stores them, so the digest of what was
    written equals the digest of what the stream or a later read shows.
    """
    text = json.dumps(canonical(image, ignore), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=size).hexdigest()


def same_item(a: Image | None, b: Image | None, ignore: Collection[str] = ()) -> bool:
    """True when two items (or two absences) are equal in canonical form, ignoring `ignore`.

    Items read the same way are usually equal as they are (dict equality ignores attribute order),
    so the canonical form is built only when they are not.
    """
    if a is None or b is None:
        return a is None and b is None
    if a == b:
        return True
    return canonical(a, ignore) == canonical(b, ignore)
