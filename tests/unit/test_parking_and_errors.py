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


def test_a_request_botocore_refuses_before_sending_is_permanent_never_retried():
    import boto3
    from botocore.exceptions import ParamValidationError

    client = boto3.client("dynamodb", region_name="us-east-1")
    try:  # a number as a JSON number: botocore refuses it before any request is made
        client.put_item(TableName="t", Item={"pk": {"S": "k"}, "n": {"N": 12.5}})
    except ParamValidationError as exc:
        error = classify(exc)
    assert isinstance(error, PermanentError) and error.reason == "ParamValidationError"
    assert "12.5" not in str(error)  # botocore quotes the value; the error kept for logs does not


def test_error_texts_keep_the_code_and_drop_the_values_aws_quotes():
    exc = ClientError(
        {
            "Error": {
                "Code": "ValidationException",
                "Message": "The parameter cannot be converted to a numeric value: 4111-1111",
            }
        },
        "PutItem",
    )
    error = classify(exc)
    assert isinstance(error, PermanentError)
    assert "4111" not in str(error) and "ValidationException" in str(error) and "numeric value" in str(error)


def test_errors_an_operator_must_fix_are_retried_and_flagged():
    for code in ("AccessDeniedException", "AccessDenied", "ResourceNotFoundException", "KMSDisabledException"):
        error = classify(client_error(code))
        assert isinstance(error, RetryableError) and error.needs_operator, code
    throttled = classify(client_error("ProvisionedThroughputExceededException"))
    assert isinstance(throttled, RetryableError) and not throttled.needs_operator
