"""Codec: Lambda JSON <-> client form, byte for byte, 38 digits, any nesting."""

import base64
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddb_bridge.core.codec import (
    MAX_ITEM_BYTES,
    MalformedImage,
    decode_image,
    encode_image,
    from_python,
    item_size,
    to_python,
)

numbers = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: d == 0 or (len(d.as_tuple().digits) <= 38 and -130 < d.adjusted() < 125)
)
scalars = st.one_of(
    st.text(max_size=20).map(lambda s: {"S": s}),
    numbers.map(lambda d: {"N": str(d)}),
    st.binary(max_size=40).map(lambda b: {"B": b}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=4, unique=True).map(lambda v: {"BS": v}),
    st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=4, unique=True).map(lambda v: {"SS": v}),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda v: {"L": v}),
        st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=4).map(lambda v: {"M": v}),
    ),
    max_leaves=12,
)
images = st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=6)


@settings(max_examples=300, deadline=None)
@given(images)
def test_lambda_json_round_trip_is_exact(image):
    # GIVEN a client-form image, WHEN Lambda serialises it to JSON text and we decode it back
    wire = json.loads(json.dumps(encode_image(image)))
    # THEN every byte, digit and nesting level is identical
    assert decode_image(wire) == image


def test_nested_binary_is_decoded_once_at_every_depth():
    raw = bytes(range(256))
    wire = {
        "m": {
            "M": {
                "l": {
                    "L": [
                        {"B": base64.b64encode(raw).decode()},
                        {"M": {"bs": {"BS": [base64.b64encode(b"\x00").decode()]}}},
                    ]
                }
            }
        }
    }
    decoded = decode_image(wire)
    assert decoded["m"]["M"]["l"]["L"][0] == {"B": raw}
    assert decoded["m"]["M"]["l"]["L"][1]["M"]["bs"] == {"BS": [b"\x00"]}


def test_numbers_keep_38_digits_and_are_never_floats():
    n = "12345678901234567890123456789012345678"
    assert decode_image({"n": {"N": n}}) == {"n": {"N": n}}
    assert to_python({"n": {"N": n}})["n"] == Decimal(n)
    assert from_python({"n": Decimal(n)}) == {"n": {"N": n}}


@pytest.mark.parametrize("bad", [{"B": "%%%"}, {"X": "1"}, {"S": "a", "N": "1"}, "text"])
def test_malformed_values_raise_a_clear_error(bad):
    with pytest.raises(MalformedImage):
        decode_image({"a": bad})


def test_item_size_follows_dynamodb_rules():
    assert item_size({"ab": {"S": "héllo"}}) == 2 + 6
    assert item_size({"n": {"N": "12345"}}) == 1 + 4
    assert item_size({"b": {"B": b"\x00" * 10}, "t": {"BOOL": True}}) == 1 + 10 + 1 + 1
    assert item_size({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + 1 + 1 + 1
    assert item_size({"big": {"S": "x" * MAX_ITEM_BYTES}}) > MAX_ITEM_BYTES
