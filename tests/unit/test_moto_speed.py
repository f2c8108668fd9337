"""harness.moto_speed: moto's responses and stored items are the same with the fast paths and without them."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import boto3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto.core.parse import JSONParser
from moto.core.serialize import XFormedAttributePicker, get_serializer_class
from moto.core.utils import get_service_model
from moto.dynamodb.exceptions import ItemSizeTooLarge
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.responses import DynamoResult

from harness import moto_speed

moto_speed.install()
SERVICE = get_service_model("dynamodb")  # moto's model classes, as its responses use

names = st.text(min_size=1, max_size=8)
numbers = st.integers(-(10**12), 10**12).map(str) | st.decimals(allow_nan=False, allow_infinity=False, places=3).map(
    str
)
scalars = st.one_of(
    st.text(max_size=20).map(lambda s: {"S": s}),
    numbers.map(lambda n: {"N": n}),
    st.binary(max_size=12).map(lambda b: {"B": base64.b64encode(b).decode()}),
    st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=4, unique=True).map(lambda v: {"SS": v}),
    st.lists(numbers, min_size=1, max_size=4, unique=True).map(lambda v: {"NS": v}),
    st.lists(st.binary(min_size=1, max_size=6), min_size=1, max_size=3, unique=True).map(
        lambda v: {"BS": [base64.b64encode(b).decode() for b in v]}
    ),
    st.just({"NULL": True}),
    st.booleans().map(lambda b: {"BOOL": b}),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda v: {"L": v}),
        st.dictionaries(names, inner, max_size=4).map(lambda v: {"M": v}),
    ),
    max_leaves=12,
)
items = st.dictionaries(names, values, max_size=6).map(lambda attrs: {**attrs, "pk": {"S": "key"}})


def serialized(operation: str, result: dict[str, Any]) -> str:
    """The JSON body moto sends for this result of this operation."""
    model = SERVICE.operation_model(operation)
    serializer = get_serializer_class("dynamodb", "json")(operation_model=model, value_picker=XFormedAttributePicker())
    return str(serializer.serialize(DynamoResult(result).result)["body"])


def both(operation: str, result: dict[str, Any]) -> tuple[str, str]:
    """(fast, stock) bodies."""
    fast = serialized(operation, result)
    with moto_speed.stock():
        return fast, serialized(operation, result)


@settings(max_examples=200, deadline=None)
@given(st.lists(items, max_size=4))
def test_scan_and_get_item_bodies_are_the_same_with_the_fast_path(wire_items: list[dict[str, Any]]) -> None:
    stored = [Item(DynamoType({"S": "key"}), None, item) for item in wire_items]
    fast, slow = both("Scan", {"Count": len(stored), "ScannedCount": len(stored), "Items": [i.attrs for i in stored]})
    assert fast == slow
    if stored:
        fast, slow = both("GetItem", {"Item": stored[0].attrs})
        assert fast == slow


def test_bytes_and_text_binaries_and_odd_shapes_serialize_as_moto_does() -> None:
    odd = {
        "raw": DynamoType({"B": b"\x00\xff"}),  # what PutItem stores
        "text": DynamoType({"B": "AP8="}),  # what an import leaves
        "rawset": DynamoType({"BS": [b"\x01", "Ag=="]}),
        "nested": DynamoType({"M": {"b": {"B": "AP8="}, "l": {"L": [{"N": "1"}, {"NULL": True}]}}}),
        "empty": DynamoType({"S": ""}),
        "emptyset": DynamoType({"L": []}),
        "emptymap": DynamoType({"M": {}}),
    }
    fast, slow = both("GetItem", {"Item": odd})
    assert fast == slow
    assert '"raw": {"B": "AP8="}' in fast


def test_the_fast_path_is_what_the_server_uses_and_reads_items_back_exactly(aws: Any) -> None:
    client = boto3.client("dynamodb")
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    item = {
        "pk": {"S": "k"},
        "b": {"B": b"\x00\xff"},
        "bs": {"BS": [b"\x01", b"\x02"]},
        "m": {"M": {"n": {"N": "1.50"}, "l": {"L": [{"S": "é"}, {"BOOL": False}, {"NULL": True}]}}},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2"]},
    }
    client.put_item(TableName="t", Item=item)
    fast = client.scan(TableName="t")["Items"]
    with moto_speed.stock():
        slow = client.scan(TableName="t")["Items"]
    assert fast == slow
    assert fast[0]["b"] == {"B": b"\x00\xff"} and fast[0]["m"]["M"]["l"]["L"][0] == {"S": "é"}


@settings(max_examples=200, deadline=None)
@given(items)
def test_items_are_stored_as_moto_stores_them_with_one_size_check(wire_item: dict[str, Any]) -> None:
    fast = Item(DynamoType({"S": "key"}), None, wire_item)
    with moto_speed.stock():
        slow = Item(DynamoType({"S": "key"}), None, wire_item)
    assert type(fast.attrs) is type(slow.attrs)
    assert fast == slow and list(fast.attrs) == list(slow.attrs)
    assert fast.to_json() == slow.to_json()


@pytest.mark.parametrize("filler", [404_900, 405_100])
def test_an_item_over_moto_s_limit_is_refused_the_same_way(filler: int) -> None:
    attrs = {"pk": {"S": "key"}, "a": {"S": "x" * (filler // 2)}, "b": {"S": "y" * (filler - filler // 2)}}
    outcomes = []
    for stock in (False, True):
        with moto_speed.stock() if stock else contextlib.nullcontext():
            try:
                Item(DynamoType({"S": "key"}), None, attrs)
                outcomes.append("stored")
            except ItemSizeTooLarge:
                outcomes.append("refused")
    assert outcomes[0] == outcomes[1] == ("stored" if filler < 405_000 else "refused")


def parsed_request(operation: str, body: dict[str, Any]) -> Any:
    """What moto's JSON parser makes of a request body (the AttributeValues in it included)."""
    parser = JSONParser(SERVICE.operation_model(operation))
    return parser.parse(
        {
            "method": "POST",
            "values": {},
            "headers": {},
            "body": json.dumps(body).encode(),
            "url_path": "/",
            "url_params": {},
        }
    )  # type: ignore[typeddict-item]


@settings(max_examples=200, deadline=None)
@given(st.lists(items, min_size=1, max_size=4))
def test_requests_are_parsed_as_moto_parses_them(wire_items: list[dict[str, Any]]) -> None:
    body = {"RequestItems": {"t": [{"PutRequest": {"Item": item}} for item in wire_items]}}
    fast = parsed_request("BatchWriteItem", body)
    with moto_speed.stock():
        slow = parsed_request("BatchWriteItem", body)
    assert fast == slow
    put = {"TableName": "t", "Item": wire_items[0], "ExpressionAttributeValues": {":v": wire_items[0]["pk"]}}
    fast = parsed_request("PutItem", put)
    with moto_speed.stock():
        assert fast == parsed_request("PutItem", put)


def test_odd_attribute_values_go_to_moto_s_own_parser() -> None:
    odd = {"two": {"S": "a", "N": "1"}, "none": {"S": None}, "unknown": {"X": "1"}, "b": {"B": "AP8="}}
    body = {"TableName": "t", "Item": {"pk": {"S": "k"}, **odd}}
    fast = parsed_request("PutItem", body)
    with moto_speed.stock():
        assert fast == parsed_request("PutItem", body)
    assert fast["Item"]["b"] == {"B": b"\x00\xff"}
