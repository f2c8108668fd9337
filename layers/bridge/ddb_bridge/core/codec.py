"""Conversions between the DynamoDB JSON that Lambda delivers and what boto3's low-level client sends.

Lambda hands stream images over as JSON, so `B` and `BS` values are base64 text, at any depth inside
`M` and `L`. botocore base64-encodes `bytes` itself, so passing that text through unchanged would
double-encode every binary value (the classic corruption). Numbers stay strings: never a float.
"""

from __future__ import annotations

import base64
import binascii
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

AttributeValue = dict[str, Any]
Image = dict[str, AttributeValue]

MAX_ITEM_BYTES = 400 * 1024


class MalformedImage(ValueError):
    """An image that is not valid DynamoDB JSON (bad type tag, bad base64)."""


def _b64(text: Any) -> bytes:
    if isinstance(text, (bytes, bytearray)):
        return bytes(text)  # already decoded (boto3 GetRecords hands out bytes)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise MalformedImage("binary value is not valid base64") from exc


def decode_value(value: AttributeValue) -> AttributeValue:
    """One attribute value from Lambda's JSON to the client's form (binary as bytes)."""
    if not isinstance(value, dict) or len(value) != 1:
        raise MalformedImage(f"attribute value must be an object with one type tag, got {type(value).__name__}")
    ((tag, inner),) = value.items()
    if tag == "B":
        return {"B": _b64(inner)}
    if tag == "BS":
        return {"BS": [_b64(v) for v in inner]}
    if tag == "M":
        return {"M": decode_image(inner)}
    if tag == "L":
        return {"L": [decode_value(v) for v in inner]}
    if tag in ("S", "N", "BOOL", "NULL", "SS", "NS"):
        return value
    raise MalformedImage("unknown attribute type tag")


def decode_image(image: Image) -> Image:
    """A whole image (or key) from Lambda's JSON to the client's form."""
    if not isinstance(image, dict):
        raise MalformedImage("image must be an object of attribute values")
    return {name: decode_value(value) for name, value in image.items()}


def encode_value(value: AttributeValue) -> AttributeValue:
    """The reverse of `decode_value`: client form (bytes) to Lambda's JSON (base64 text)."""
    ((tag, inner),) = value.items()
    if tag == "B":
        return {"B": base64.b64encode(bytes(inner)).decode("ascii")}
    if tag == "BS":
        return {"BS": [base64.b64encode(bytes(v)).decode("ascii") for v in inner]}
    if tag == "M":
        return {"M": encode_image(inner)}
    if tag == "L":
        return {"L": [encode_value(v) for v in inner]}
    return value


def encode_image(image: Image) -> Image:
    """A whole image from the client's form to Lambda's JSON form."""
    return {name: encode_value(value) for name, value in image.items()}


_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()


def to_python(image: Image) -> dict[str, Any]:
    """Client-form image to Python values (Decimal numbers, Binary bytes), via boto3's deserializer."""
    return {name: _DESERIALIZER.deserialize(value) for name, value in image.items()}


def from_python(item: dict[str, Any]) -> Image:
    """Python values to a client-form image, via boto3's serializer (floats are refused there)."""
    return {name: _SERIALIZER.serialize(value) for name, value in item.items()}


def _value_size(value: AttributeValue) -> int:
    ((tag, inner),) = value.items()
    if tag == "S":
        return len(inner.encode("utf-8"))
    if tag == "N":
        return _number_size(inner)
    if tag == "B":
        return len(inner) if isinstance(inner, (bytes, bytearray, Binary)) else len(_b64(inner))
    if tag in ("BOOL", "NULL"):
        return 1
    if tag == "SS":
        return sum(len(v.encode("utf-8")) for v in inner)
    if tag == "NS":
        return sum(_number_size(v) for v in inner)
    if tag == "BS":
        return sum(len(v) if isinstance(v, (bytes, bytearray)) else len(_b64(v)) for v in inner)
    if tag == "M":
        return 3 + sum(len(k.encode("utf-8")) + _value_size(v) + 1 for k, v in inner.items())
    if tag == "L":
        return 3 + sum(_value_size(v) + 1 for v in inner)
    raise MalformedImage("unknown attribute type tag")


def _number_size(text: str) -> int:
    digits = Decimal(text).as_tuple().digits
    return (len(digits) + 1) // 2 + 1


def item_size(image: Image) -> int:
    """DynamoDB's size of an item in bytes (names plus values, the rule behind the 400 KB limit)."""
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in image.items())
