"""Parked messages keep the whole record; errors are classified for retry or park."""

import json

from botocore.exceptions import ClientError, EndpointConnectionError

from ddb_bridge.core.batch import park_or_fail
from ddb_bridge.core.errors import PermanentError, RetryableError, classify
from ddb_bridge.core.parking import parked_message, record_of


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


class FlakyLot:
    """A parking lot whose SQS refuses the first `refusals` messages."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.parked: list[dict] = []

    def park(self, record: dict, *, reason: str, error: str) -> None:
        if self.refusals:
            self.refusals -= 1
            raise RetryableError("AccessDenied", "SQS refused the message")
        self.parked.append(record)


def test_a_record_sqs_refuses_is_marked_for_retry_never_dropped():
    lot, record, failed = FlakyLot(refusals=1), {"n": 1}, set()
    error = PermanentError("MalformedRecord", "bad base64")
    assert park_or_fail(lot, record, error, failed) is False
    assert failed == {id(record)} and lot.parked == []
    failed.clear()
    assert park_or_fail(lot, record, error, failed) is True
    assert failed == set() and lot.parked == [record]


def test_a_record_holding_several_failed_changes_is_parked_once():
    lot, record, failed, parked = FlakyLot(refusals=0), {"n": 2}, set(), set()
    error = PermanentError("ItemTooLarge", "too big")
    assert [park_or_fail(lot, record, error, failed, parked) for _ in range(3)] == [True, False, False]
    assert lot.parked == [record] and failed == set()
