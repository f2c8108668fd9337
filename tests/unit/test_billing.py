"""The billing meter against hand-computed cases: the unit rules, then real calls to moto over HTTP.

Item sizes are built to the byte: an item `{"pk": "a", "pad": "x" * n}` is 2 + 1 + 3 + n bytes (names
plus UTF-8 values), so `padded(1536)` is exactly 1.5 KB.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from harness.billing import (
    Bill,
    Meter,
    Write,
    batch_get_units,
    moto_sizer,
    query_units,
    read_units,
    transaction_units,
    write_units,
)
from harness.moto_server import LocalAws
from harness.world import create_table

REGION = "us-east-1"


def padded(size: int, pk: str = "a") -> dict[str, Any]:
    """An item of exactly `size` bytes (one-letter key)."""
    assert len(pk) == 1
    return {"pk": {"S": pk}, "pad": {"S": "x" * (size - 6)}}


# -- the rules ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "units"), [(None, 1), (0, 1), (1, 1), (1024, 1), (1025, 2), (3584, 4), (400 * 1024, 400)]
)
def test_write_units_per_started_kb(size: int | None, units: int) -> None:
    assert write_units(size) == units


@pytest.mark.parametrize(
    ("size", "consistent", "units"),
    [
        (None, True, 1.0),
        (None, False, 0.5),
        (4096, True, 1.0),
        (4097, True, 2.0),
        (4097, False, 1.0),
        (10240, True, 3.0),
    ],
)
def test_read_units_per_started_4kb(size: int | None, consistent: bool, units: float) -> None:
    assert read_units(size, consistent=consistent) == units


def test_a_write_bills_the_larger_of_before_and_after() -> None:
    assert Write("t", 1536, 500, "put").units() == 2  # replacing 1.5 KB with 0.5 KB: 2
    assert Write("t", None, 300, "put").units() == 1
    assert Write("t", 2100, None, "delete").units() == 3  # the deleted item's size
    assert Write("t", None, None, "delete").units() == 1  # nothing there: the minimum
    assert Write("t", 500, 2560, "update").units() == 3


def test_a_transaction_bills_every_action_twice_condition_checks_included() -> None:
    # ConditionCheck on an absent tombstone (1) + Put of a 1.5 KB item (2), both doubled
    assert transaction_units([Write("tomb", None, None, "check"), Write("t", None, 1536, "put")]) == 6


def test_batch_get_bills_each_key_and_query_rounds_once() -> None:
    # AWS's example: 1.5 KB + 6.5 KB read as 4 KB + 8 KB = 3 units; one missing key adds the minimum
    assert batch_get_units([1536, 6656], 1, consistent=True) == 4.0
    assert batch_get_units([1536, 6656], 1, consistent=False) == 2.0
    # a Query sums first: 10 items of 4,180 bytes = 40.8 KB -> 44 KB = 11 units
    assert query_units([4180] * 10, consistent=True) == 11.0


def test_bills_add_and_divide() -> None:
    a, b = Bill(write_units=3, read_units=1.5), Bill(write_units=1, kinesis_records=2)
    a.requests["PutItem"] += 2
    a.add(b)
    assert (a.write_units, a.read_units, a.kinesis_records, a.request_count) == (4, 1.5, 2, 2)
    assert a.per(2)["billed_write_units"] == 2.0


# -- the meter on real calls ------------------------------------------------------------------------------
@pytest.fixture
def ddb(aws: LocalAws) -> Any:
    client = boto3.client("dynamodb", region_name=REGION)
    create_table(client, "items", [("pk", "S")])
    create_table(client, "tombs", [("pk", "S")])
    return client


def metered(client: Any) -> Meter:
    meter = Meter(moto_sizer())
    meter.watch_dynamodb(client, "fn")
    return meter


def test_put_update_delete_bill_what_aws_documents(ddb: Any) -> None:
    raw = boto3.client("dynamodb", region_name=REGION)  # unmetered: sets the scene
    meter = metered(ddb)
    ddb.put_item(TableName="items", Item=padded(1536))  # new 1.5 KB item: 2
    ddb.put_item(TableName="items", Item=padded(500))  # replaces 1.5 KB with 0.5 KB: the larger, 2
    with pytest.raises(ClientError):  # refused: the larger of the 0.5 KB there and the 300 B offered, 1
        ddb.put_item(TableName="items", Item=padded(300), ConditionExpression="attribute_not_exists(pk)")
    ddb.update_item(  # 0.5 KB -> 2.5 KB: 3
        TableName="items",
        Key={"pk": {"S": "a"}},
        UpdateExpression="SET #p = :p",
        ExpressionAttributeNames={"#p": "pad"},
        ExpressionAttributeValues={":p": {"S": "x" * (2560 - 6)}},
    )
    raw.put_item(TableName="items", Item=padded(2100, "b"))
    ddb.delete_item(TableName="items", Key={"pk": {"S": "b"}})  # the deleted 2,100 bytes: 3
    ddb.delete_item(TableName="items", Key={"pk": {"S": "z"}})  # nothing there: 1
    bill = meter.bill("fn")
    assert bill.write_units == 2 + 2 + 1 + 3 + 3 + 1
    assert bill.failed_conditional_write_units == 1
    assert bill.requests == {"PutItem": 3, "UpdateItem": 1, "DeleteItem": 2}
    assert bill.read_units == 0


def test_batch_write_bills_each_item_rounded_up(ddb: Any) -> None:
    meter = metered(ddb)
    ddb.batch_write_item(
        RequestItems={
            "items": [{"PutRequest": {"Item": padded(500, "c")}}, {"PutRequest": {"Item": padded(3584, "d")}}]
        }
    )
    assert meter.bill().write_units == 1 + 4  # AWS's example: 500 B + 3.5 KB bill as 1 KB + 4 KB


def test_transactions_bill_twice_and_a_cancelled_one_is_reported_apart(ddb: Any) -> None:
    meter = metered(ddb)
    actions = [
        {
            "ConditionCheck": {
                "TableName": "tombs",
                "Key": {"pk": {"S": "e"}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
        {"Put": {"TableName": "items", "Item": padded(1536, "e"), "ConditionExpression": "attribute_not_exists(pk)"}},
    ]
    ddb.transact_write_items(TransactItems=actions)  # 2 x (1 + 2)
    with pytest.raises(ClientError):  # the put's condition fails now: billed for the prepare phase, 1 + 2
        ddb.transact_write_items(TransactItems=actions)
    bill = meter.bill()
    assert bill.write_units == 6 + 3
    assert bill.cancelled_transaction_write_units == 3
    assert bill.write_units_by_table == {"tombs": 3, "items": 6}
    assert bill.per(1)["billed_write_units_range"] == [6.0, 12.0]


def test_reads_bill_per_4kb_per_item_halved_when_eventually_consistent(ddb: Any) -> None:
    raw = boto3.client("dynamodb", region_name=REGION)
    raw.put_item(TableName="items", Item=padded(1536, "f"))
    raw.put_item(TableName="items", Item=padded(6656, "g"))
    raw.put_item(TableName="items", Item=padded(5000, "h"))
    meter = metered(ddb)
    keys = [{"pk": {"S": k}} for k in "fgm"]  # "m" is missing
    ddb.batch_get_item(RequestItems={"items": {"Keys": keys, "ConsistentRead": True}})  # 1 + 2 + 1
    ddb.batch_get_item(RequestItems={"items": {"Keys": keys}})  # half: 2
    ddb.get_item(TableName="items", Key={"pk": {"S": "h"}}, ConsistentRead=True)  # 5,000 bytes: 2
    ddb.get_item(TableName="items", Key={"pk": {"S": "m"}})  # missing, eventually consistent: 0.5
    bill = meter.bill()
    assert bill.read_units == 4 + 2 + 2 + 0.5
    assert bill.write_units == 0


def test_kinesis_records_payload_units_and_border_bytes(aws: LocalAws) -> None:
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    meter = Meter()
    meter.watch_kinesis(kinesis, "relay")
    big, small = b"x" * (30 * 1024 - 1), b"y" * 99  # + a one-byte partition key: 30 KB and 100 bytes
    kinesis.put_records(
        StreamName="s", Records=[{"Data": big, "PartitionKey": "k"}, {"Data": small, "PartitionKey": "k"}]
    )
    bill = meter.bill("relay")
    assert bill.kinesis_records == 2
    assert bill.kinesis_put_payload_units == 2 + 1  # 25 KB units, per record
    assert bill.kinesis_ingest_bytes == 30 * 1024 + 1024  # 1 KB rounding, per record
    assert bill.kinesis_data_bytes == 30 * 1024 + 100
    assert bill.border_bytes > (30 * 1024 + 100) * 4 // 3  # the HTTP body carries the data as base64
    assert bill.requests == {"PutRecords": 1}
