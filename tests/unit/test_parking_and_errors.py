"""Parked messages keep the whole record; errors are classified for retry or park."""

import json

from botocore.exceptions import ClientError, EndpointConnectionError

from ddb_bridge.errors import PermanentError, RetryableError, classify
from ddb_bridge.parking import parked_message, record_of


def client_error(code):
    return ClientError({"Error": {"Code": code, "Message": code}}, "PutItem")


def test_small_and_large_records_come_back_whole():
    small = {"dynamodb": {"NewImage": {"a": {"S": "x"}}}}
    large = {"dynamodb": {"NewImage": {"a": {"S": "y" * 300_000}}}}
    for record in (small, large):
        body = parked_message(record, reason="ItemTooLarge", error="too big", source="t")
        assert len(body) < 256 * 1024
        assert record_of(body) == record
        assert json.loads(body)["reason"] == "ItemTooLarge"


def test_classification():
    assert isinstance(classify(client_error("ValidationException")), PermanentError)
    for code in (
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "InternalServerError",
        "ExpiredTokenException",
        "ResourceNotFoundException",
        "AccessDeniedException",
    ):
        assert isinstance(classify(client_error(code)), RetryableError), code
    assert isinstance(classify(EndpointConnectionError(endpoint_url="x")), RetryableError)
    assert isinstance(classify(KeyError("bug")), PermanentError)
