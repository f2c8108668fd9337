"""The validator against what DynamoDB (moto over HTTP) accepts or refuses, with generated values.

Each value is sent as Lambda's JSON would carry it, in a raw PutItem to moto's HTTP endpoint (no
botocore in between, so wire types such as `{"S": 5}` reach the server). Whatever moto refuses, the
validator refuses; whatever the validator accepts, moto stores and gives back unchanged. moto is laxer
than DynamoDB in places (documented limits it does not enforce): the validator may refuse more, but
only for one of those documented rules, which the test names.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddb_bridge.core import validate
from harness.moto_server import LOOPBACK, LocalAws
from harness.world import create_table

TABLE = "validator"
# DynamoDB's documented rules that moto 5.2.5 does not enforce on PutItem (the validator follows DynamoDB).
STRICTER_THAN_MOTO = (
    "significant digits",  # 38 digits of precision
    "range",  # 1E-130 .. 9.99..E+125 (moto checks through a float)
    "duplicate elements",  # sets hold unique values
    "not valid base64",  # moto stores any text as binary
    "must be JSON text",  # a list or object where text belongs
    "must be true or false",
    "NULL must be true",
    "must be a JSON",  # M not an object, L not a list
    "exactly one type tag",
    "lone surrogate",
    "nested deeper",
    "an empty set",  # moto refuses one at the top level only; DynamoDB at any depth
)


@pytest.fixture(scope="module")
def endpoint(local_aws: LocalAws) -> str:
    local_aws.reset()
    create_table(boto3.client("dynamodb"), TABLE, [("pk", "S")])
    return local_aws.endpoint


def raw(endpoint: str, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One DynamoDB call as raw JSON over HTTP (moto checks no signature)."""
    request = urllib.request.Request(
        endpoint + "/",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"DynamoDB_20120810.{operation}",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261202/us-east-1/dynamodb/aws4_request, "
            "SignedHeaders=host, Signature=0",
        },
    )
    try:
        with LOOPBACK.open(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


numbers = st.one_of(
    st.integers(-(10**38) + 1, 10**38 - 1).map(str),
    st.decimals(allow_nan=False, allow_infinity=False, places=6, min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(["0", "-0", "1e5", "1E-130", "9.9999999999999999999999999999999999999E+125", ".5", "1.", "+5"]),
)
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
scalars = st.one_of(
    texts.map(lambda s: {"S": s}),
    numbers.map(lambda n: {"N": n}),
    st.binary(max_size=12).map(lambda b: {"B": b64(b)}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.sets(texts, min_size=1, max_size=4).map(lambda s: {"SS": sorted(s)}),
    st.sets(st.integers(-1000, 1000), min_size=1, max_size=4).map(lambda s: {"NS": [str(n) for n in sorted(s)]}),
    st.sets(st.binary(max_size=6), min_size=1, max_size=4).map(lambda s: {"BS": [b64(b) for b in sorted(s)]}),
)
valid = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: {"L": items}),
        st.dictionaries(texts, inner, max_size=3).map(lambda m: {"M": m}),
    ),
    max_leaves=8,
)
broken = st.one_of(
    st.sampled_from(
        [
            {"N": "abc"},
            {"N": " 5"},
            {"N": "NaN"},
            {"N": "Infinity"},
            {"N": "0x10"},
            {"N": "1_000"},
            {"N": "12,50"},
            {"N": "SECRET-1"},
            {"B": "SECRET!!!"},
            {"S": ["SECRET"]},
            {"SS": ["SECRET", "SECRET"]},
            {"N": ""},
            {"N": "1" * 39},
            {"N": "1E126"},
            {"N": "1E-131"},
            {"N": 5},
            {"N": ["1"]},
            {"S": 5},
            {"S": ["a"]},
            {"S": "\ud800"},
            {"B": "!!!"},
            {"B": "YQ"},
            {"B": 5},
            {"SS": []},
            {"NS": []},
            {"BS": []},
            {"SS": ["a", "a"]},
            {"NS": ["1", "1.0"]},
            {"BS": ["YQ==", "YQ=="]},
            {"SS": "a"},
            {"BOOL": "true"},
            {"NULL": False},
            {"NULL": "x"},
            {"M": []},
            {"L": {}},
            {"X": "1"},
            {},
            {"S": "a", "N": "1"},
        ]
    ),
    valid.map(lambda v: {"M": {"inner": v, "bad": {"N": "SECRET-2"}}}),
    valid.map(lambda v: {"L": [v, {"SS": []}]}),
)


def _settle(value: Any) -> Any:
    """A value as compared after a round trip: sets are order-free, numbers by value."""
    from decimal import Decimal

    ((tag, inner),) = value.items()
    if tag == "N":
        return ("N", Decimal(inner))
    if tag in ("SS", "BS"):
        return (tag, frozenset(inner))
    if tag == "NS":
        return (tag, frozenset(Decimal(v) for v in inner))
    if tag == "M":
        return ("M", tuple(sorted((k, _settle(v)) for k, v in inner.items())))
    if tag == "L":
        return ("L", tuple(_settle(v) for v in inner))
    return (tag, inner)


def _validator(item: dict[str, Any]) -> str | None:
    try:
        validate.image(item, {"pk": {"S": "k"}})
    except validate.InvalidValue as exc:
        return str(exc)
    return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=valid)
def test_every_value_dynamodb_takes_is_accepted_and_round_trips(endpoint: str, value: dict[str, Any]) -> None:
    item = {"pk": {"S": "k"}, "x": value}
    assert _validator(item) is None
    status, _ = raw(endpoint, "PutItem", {"TableName": TABLE, "Item": item})
    assert status == 200
    status, got = raw(endpoint, "GetItem", {"TableName": TABLE, "Key": {"pk": {"S": "k"}}, "ConsistentRead": True})
    assert status == 200 and _settle(got["Item"]["x"]) == _settle(value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=broken)
def test_what_dynamodb_refuses_the_validator_refuses_without_quoting_it(endpoint: str, value: dict[str, Any]) -> None:
    item = {"pk": {"S": "k"}, "x": value}
    refusal = _validator(item)
    status, _ = raw(endpoint, "PutItem", {"TableName": TABLE, "Item": item})
    if status != 200:  # moto refuses (400) or breaks on it (500): the validator must have refused it
        assert refusal is not None, value
    assert refusal is not None, f"the validator let through {value!r}"
    if status == 200:  # moto took it: only a rule of DynamoDB's that moto does not enforce may explain it
        underscore = "not a number" in refusal and "_" in json.dumps(value)  # moto parses with Python's float()
        assert underscore or any(rule in refusal for rule in STRICTER_THAN_MOTO), refusal
    assert "SECRET" not in refusal  # the message names the place and the rule, never the value


def test_keys_and_items_as_dynamodb_bounds_them(endpoint: str) -> None:
    assert _validator({"pk": {"S": "k"}, "": {"S": "x"}}) is not None  # an empty attribute name
    with pytest.raises(validate.InvalidValue, match="may not be empty"):
        validate.key({"pk": {"S": ""}})
    with pytest.raises(validate.InvalidValue, match="2048"):
        validate.key({"pk": {"S": "x" * 2049}})
    with pytest.raises(validate.InvalidValue, match="S, N or B"):
        validate.key({"pk": {"BOOL": True}})
    with pytest.raises(validate.InvalidValue, match="409600"):
        validate.image({"pk": {"S": "k"}, "big": {"S": "x" * 410_000}})
    deep: dict[str, Any] = {"S": "bottom"}
    for _ in range(40):
        deep = {"L": [deep]}
    with pytest.raises(validate.InvalidValue, match="nested deeper"):
        validate.image({"pk": {"S": "k"}, "deep": deep})
    assert raw(endpoint, "PutItem", {"TableName": TABLE, "Item": {"pk": {"S": ""}}})[0] == 400  # moto agrees
