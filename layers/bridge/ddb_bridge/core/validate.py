"""What DynamoDB would refuse in a key or an item, found before any write and before a change crosses the border.

Images are checked in Lambda's JSON form (binary as base64 text), the form every stream handler
receives. The rules are DynamoDB's documented ones (docs/design.md#malformed-input): one known type
tag per value; `S` text that UTF-8 can encode; `N` text a number of at most 38 significant digits
within 1E-130..9.99..E+125; `B` strict base64; sets non-empty, of their element type, without
duplicates (numbers compared by value, binary by bytes); `BOOL` true or false; `NULL` true; maps and
lists nested at most 32 levels; attribute names non-empty and under 64 KB; key values of type S, N
or B, non-empty, at most 2048 bytes; an item at most 400 KB.

A refusal raises `InvalidValue`, whose message names where (the attribute, and positions below it)
and what is wrong, never the value itself: messages reach logs and parked records' `error` text.
"""

from __future__ import annotations

import base64
import binascii
import re
from decimal import Decimal
from typing import Any

from .codec import MAX_ITEM_BYTES, Image, decode_image, item_size

MAX_DEPTH = 32
MAX_NAME_BYTES = 65535
MAX_PARTITION_KEY_BYTES = 2048
MAX_DIGITS = 38
_NUMBER_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_TAGS = ("S", "N", "B", "SS", "NS", "BS", "M", "L", "BOOL", "NULL")
_KEY_TAGS = ("S", "N", "B")


class InvalidValue(ValueError):
    """A value DynamoDB would refuse; the message says where and why, never what the value is."""

    def __init__(self, message: str, reason: str = "InvalidValue") -> None:
        super().__init__(message)
        self.reason = reason


def _where(path: str) -> str:
    return f"attribute {path}"


def number(text: Any, path: str) -> tuple[int, str, int]:
    """A DynamoDB number's text, checked; its value as (sign, significant digits, power of the first digit)."""
    if not isinstance(text, str):
        raise InvalidValue(f"{_where(path)}: a number must be JSON text, got {type(text).__name__}")
    if len(text) > 400 or not _NUMBER_TEXT.fullmatch(text):
        raise InvalidValue(f"{_where(path)}: not a number")
    sign, digits, exponent = Decimal(text).as_tuple()
    assert isinstance(exponent, int)
    all_digits = "".join(map(str, digits)).lstrip("0")
    significant = all_digits.rstrip("0")
    if not significant:
        return (0, "", 0)  # zero, however written
    if len(significant) > MAX_DIGITS:
        raise InvalidValue(f"{_where(path)}: more than {MAX_DIGITS} significant digits")
    magnitude = exponent + len(all_digits) - 1  # the power of ten of the leading digit
    if magnitude > 125:
        raise InvalidValue(f"{_where(path)}: number above DynamoDB's range (9.99..E+125)")
    if magnitude < -130:
        raise InvalidValue(f"{_where(path)}: number below DynamoDB's range (1E-130)")
    return (-1 if sign else 1, significant, magnitude)


def binary(text: Any, path: str) -> bytes:
    """A binary value as Lambda's JSON carries it (strict base64 text), decoded."""
    if isinstance(text, (bytes, bytearray)):
        return bytes(text)
    if not isinstance(text, str):
        raise InvalidValue(f"{_where(path)}: binary must be base64 text, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValue(f"{_where(path)}: binary is not valid base64") from None


def text(value: Any, path: str) -> str:
    """A string value that UTF-8 can encode."""
    if not isinstance(value, str):
        raise InvalidValue(f"{_where(path)}: a string must be JSON text, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValue(f"{_where(path)}: string is not valid UTF-8 (a lone surrogate)") from None
    return value


def _set(tag: str, inner: Any, path: str) -> None:
    if not isinstance(inner, list):
        raise InvalidValue(f"{_where(path)}: {tag} must be a JSON list, got {type(inner).__name__}")
    if not inner:
        raise InvalidValue(f"{_where(path)}: an empty set ({tag})")
    seen: set[Any] = set()
    for index, element in enumerate(inner):
        where = f"{path}[{index}]"
        key: Any
        if tag == "SS":
            key = text(element, where)
        elif tag == "NS":
            key = number(element, where)  # 1.0 and 1 are one number: DynamoDB calls them duplicates
        else:
            key = binary(element, where)
        if key in seen:
            raise InvalidValue(f"{_where(path)}: duplicate elements in a set ({tag})")
        seen.add(key)


def value(attribute: Any, path: str, depth: int = 1) -> None:
    """One attribute value, recursively."""
    if not isinstance(attribute, dict) or len(attribute) != 1:
        raise InvalidValue(f"{_where(path)}: a value must be an object with exactly one type tag")
    ((tag, inner),) = attribute.items()
    if tag not in _TAGS:
        raise InvalidValue(f"{_where(path)}: unknown type tag")
    if tag == "S":
        text(inner, path)
    elif tag == "N":
        number(inner, path)
    elif tag == "B":
        binary(inner, path)
    elif tag == "BOOL":
        if not isinstance(inner, bool):
            raise InvalidValue(f"{_where(path)}: BOOL must be true or false, got {type(inner).__name__}")
    elif tag == "NULL":
        if inner is not True:
            raise InvalidValue(f"{_where(path)}: NULL must be true")
    elif tag in ("SS", "NS", "BS"):
        _set(tag, inner, path)
    else:
        if depth >= MAX_DEPTH:
            raise InvalidValue(f"{_where(path)}: nested deeper than {MAX_DEPTH} levels")
        if tag == "M":
            if not isinstance(inner, dict):
                raise InvalidValue(f"{_where(path)}: M must be a JSON object, got {type(inner).__name__}")
            for position, (name, nested) in enumerate(inner.items()):
                text(name, f"{path}.<name {position}>")
                value(nested, f"{path}.<{position}>", depth + 1)
        else:
            if not isinstance(inner, list):
                raise InvalidValue(f"{_where(path)}: L must be a JSON list, got {type(inner).__name__}")
            for index, nested in enumerate(inner):
                value(nested, f"{path}[{index}]", depth + 1)


def _name(name: Any, position: int) -> str:
    """A top-level attribute name, checked; how messages call it."""
    if not isinstance(name, str) or not name:
        raise InvalidValue(f"attribute name #{position}: must be non-empty text")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidValue(f"attribute name #{position}: not valid UTF-8") from None
    if size > MAX_NAME_BYTES:
        raise InvalidValue(f"attribute name #{position}: longer than 64 KB")
    return repr(name[:64])


def key(keys: Any) -> None:
    """An item key as a stream record's `Keys` or a pack's `k` hold it."""
    if not isinstance(keys, dict) or not 1 <= len(keys) <= 2:
        raise InvalidValue("the key must be an object of one or two key attributes")
    for position, (name, attribute) in enumerate(keys.items()):
        label = _name(name, position)
        if not isinstance(attribute, dict) or len(attribute) != 1 or next(iter(attribute)) not in _KEY_TAGS:
            raise InvalidValue(f"key attribute {label}: must be of type S, N or B")
        ((tag, inner),) = attribute.items()
        value(attribute, f"{label} (key)")
        size = len(inner.encode("utf-8")) if tag == "S" else len(binary(inner, label)) if tag == "B" else 1
        if tag in ("S", "B") and size == 0:
            raise InvalidValue(f"key attribute {label}: a key value may not be empty")
        # Which one is the sort key (1024 bytes) the record does not say; DynamoDB refuses that one itself.
        if size > MAX_PARTITION_KEY_BYTES:
            raise InvalidValue(f"key attribute {label}: {size} bytes, over DynamoDB's {MAX_PARTITION_KEY_BYTES}")


def image(item: Any, keys: dict[str, Any] | None = None) -> Image:
    """A whole item (NewImage, OldImage, a pack's image); with `keys`, it must hold exactly those key values.

    Returns it in the client's form (binary as bytes), decoded once for the size check and the caller.
    """
    if not isinstance(item, dict):
        raise InvalidValue("an image must be an object of attribute values")
    for position, (name, attribute) in enumerate(item.items()):
        value(attribute, _name(name, position))
    if keys is not None:
        for name, attribute in keys.items():
            if item.get(name) != attribute:
                raise InvalidValue(f"the image does not hold the record's key attribute {_name(name, 0)}")
    decoded = decode_image(item)
    size = item_size(decoded)
    if size > MAX_ITEM_BYTES:
        raise InvalidValue(f"item is {size} bytes, over DynamoDB's {MAX_ITEM_BYTES} limit", "ItemTooLarge")
    return decoded
