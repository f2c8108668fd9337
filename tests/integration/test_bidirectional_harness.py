"""The local stand-ins the bidirectional tests rely on: Kinesis event source, faults, moto's transactions."""

from __future__ import annotations

import base64
import random

import boto3

from harness import moto_patches
from harness.kinesis import FlakyPutRecords, KinesisPoller
from harness.world import create_table


def kinesis_with(records: int, region: str = "ap-southeast-1") -> tuple[object, str]:
    client = boto3.client("kinesis", region_name=region)
    client.create_stream(StreamName="inbound", ShardCount=1)
    for i in range(records):
        client.put_record(StreamName="inbound", Data=f"r{i}".encode(), PartitionKey=f"{i}")
    return client, "inbound"


def data(event: dict) -> list[str]:
    return [base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]]


def test_the_kinesis_source_gives_lambdas_event_shape_and_resumes_from_the_lowest_failed_record(aws):
    # GIVEN 6 records and a handler that fails the 3rd and 5th once
    client, name = kinesis_with(6)
    seen: list[list[str]] = []
    failed_once: set[str] = set()

    def handler(event):
        seen.append(data(event))
        record = event["Records"][0]
        assert record["eventSource"] == "aws:kinesis" and record["eventID"].startswith("shardId-")
        assert set(record["kinesis"]) >= {"data", "sequenceNumber", "partitionKey", "approximateArrivalTimestamp"}
        failures = []
        for r, text in zip(event["Records"], data(event), strict=True):
            if text in ("r2", "r4") and text not in failed_once:
                failed_once.add(text)
                failures.append({"itemIdentifier": r["kinesis"]["sequenceNumber"]})
        return {"batchItemFailures": failures}

    poller = KinesisPoller(client, name, handler, region="ap-southeast-1")
    poller.drain()
    # THEN the retry starts at the lowest failed record (r2), re-delivering what followed it
    assert seen == [["r0", "r1", "r2", "r3", "r4", "r5"], ["r2", "r3", "r4", "r5"]]
    assert poller.stats.retries == 1


def test_a_function_error_bisects_the_batch_and_exhausted_records_go_to_on_failure(aws):
    # GIVEN a handler that always crashes on r3
    client, name = kinesis_with(4)
    sizes: list[int] = []
    sent: list[dict] = []

    def handler(event):
        sizes.append(len(event["Records"]))
        if "r3" in data(event):
            raise RuntimeError("poison")
        return {"batchItemFailures": []}

    poller = KinesisPoller(client, name, handler, region="ap-southeast-1", max_retries=2, on_failure=sent.append)
    poller.drain()
    # THEN the batch is split until r3 stands alone, then r3's pointer goes to the on-failure destination
    assert sizes[:3] == [4, 2, 2] and sizes[-1] == 1
    assert poller.stats.bisections >= 2
    assert len(sent) == 1 and sent[0]["KinesisBatchInfo"]["batchSize"] == 1


def test_flaky_put_records_refuses_part_of_a_call_and_writes_only_the_rest(aws):
    client, name = kinesis_with(0)
    flaky = FlakyPutRecords(client, rng=random.Random(2), fail_rate=0.5)
    response = flaky.put_records(StreamName=name, Records=[{"Data": b"x", "PartitionKey": str(i)} for i in range(20)])
    refused = [r for r in response["Records"] if "ErrorCode" in r]
    assert response["FailedRecordCount"] == len(refused) == flaky.injected > 0
    shard = client.list_shards(StreamName=name)["Shards"][0]["ShardId"]
    it = client.get_shard_iterator(StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert len(client.get_records(ShardIterator=it)["Records"]) == 20 - len(refused)


def test_a_cancelled_transaction_leaves_table_and_stream_as_they_were_and_readable(aws):
    # GIVEN moto patched (the bidirectional worlds do it), a table with a stream, and an open iterator
    moto_patches.apply()
    ddb = boto3.client("dynamodb", region_name="cn-north-1")
    streams = boto3.client("dynamodbstreams", region_name="cn-north-1")
    arn = create_table(ddb, "orders", [("pk", "S")], stream=True)
    ddb.put_item(TableName="orders", Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    first = streams.get_records(ShardIterator=it)
    # WHEN a transaction writes one item, updates another, then fails its last condition
    try:
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "orders", "Item": {"pk": {"S": "b"}}}},
                {
                    "Update": {
                        "TableName": "orders",
                        "Key": {"pk": {"S": "a"}},
                        "UpdateExpression": "SET v = :two",
                        "ExpressionAttributeValues": {":two": {"N": "2"}},
                    }
                },
                {
                    "ConditionCheck": {
                        "TableName": "orders",
                        "Key": {"pk": {"S": "zz"}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
            ]
        )
        raise AssertionError("the transaction should have been cancelled")
    except ddb.exceptions.TransactionCanceledException:
        pass
    # THEN nothing of it remains, in the table or in the stream
    assert ddb.scan(TableName="orders")["Items"] == [{"pk": {"S": "a"}, "v": {"N": "1"}}]
    # AND the iterator Lambda would keep still sees the table's next writes
    ddb.put_item(TableName="orders", Item={"pk": {"S": "c"}})
    later = streams.get_records(ShardIterator=first["NextShardIterator"])["Records"]
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in later] == ["c"]
