"""Which failures are retried in order and which park a record (docs/design.md#failures).

Messages of errors never quote attribute values: `describe` keeps an AWS error's code and the part
of its message before any detail (DynamoDB and botocore quote the offending value there, e.g. "The
parameter cannot be converted to a numeric value: <value>").
"""

from __future__ import annotations

from botocore.exceptions import (
    AliasConflictParameterError,
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    MissingParametersError,
    ParamValidationError,
    UnknownKeyError,
    UnknownParameterError,
    ValidationError,
)

# Errors that will never succeed on retry: the record is parked whole and the batch goes on.
PERMANENT_CODES = frozenset(
    {
        "ValidationException",
        "SerializationException",
        "ItemCollectionSizeLimitExceededException",
        "InvalidArgumentException",
    }
)
# Refused by botocore before anything is sent: the request itself is malformed, no retry can help.
CLIENT_VALIDATION = (
    ParamValidationError,
    ValidationError,
    UnknownKeyError,
    UnknownParameterError,
    MissingParametersError,
    AliasConflictParameterError,
)
# Credentials that stopped working: drop cached sessions before the retry.
CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
    }
)
# No retry fixes these, an operator does (a permission, a missing table or stream, a disabled key): still
# retried in order, since the fix needs no redeploy, but counted at once as `NonRetryableFailures`.
OPERATOR_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "ResourceNotFoundException",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSNotFoundException",
        "KMSInvalidStateException",
        "PeerKeysMalformed",
        "PeerKeysUnreadable",
    }
)


class PermanentError(Exception):
    """A record that can never be applied as it is (malformed, too large): park it, go on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RetryableError(Exception):
    """A failure worth retrying in order (throttling, 5xx, network, credentials)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    @property
    def needs_operator(self) -> bool:
        """True when no retry can succeed until someone fixes the cause (permissions, a missing resource)."""
        return self.reason in OPERATOR_CODES


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError, else the exception's class name."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


def describe(exc: BaseException) -> str:
    """What went wrong, without any value the request carried: the code and the message's general part."""
    code = error_code(exc)
    if isinstance(exc, ClientError):
        message = str(exc.response.get("Error", {}).get("Message", ""))
        general = message.split(":", 1)[0].strip()[:200]
        operation = getattr(exc, "operation_name", "")
        return f"{code} ({operation}): {general}" if general else f"{code} ({operation})"
    if isinstance(exc, ParamValidationError):
        return f"{code}: the request does not match the API's shapes (a value of the wrong type)"
    if isinstance(exc, (PermanentError, RetryableError)):
        return str(exc)
    return code


def is_credential_error(exc: BaseException) -> bool:
    """True when the caller's credentials expired or were rejected."""
    return isinstance(exc, ClientError) and error_code(exc) in CREDENTIAL_CODES


def classify(exc: BaseException) -> PermanentError | RetryableError:
    """Map any exception from a write to permanent (park) or retryable (report a batch item failure).

    Unknown errors count as retryable: a record stays in the stream (alarmed by iterator age and,
    after the bounded retries, kept in the on-failure queue) rather than being parked on a guess.
    """
    if isinstance(exc, (PermanentError, RetryableError)):
        return exc
    code = error_code(exc)
    if isinstance(exc, ClientError) and code in PERMANENT_CODES:
        return PermanentError(code, describe(exc))
    if isinstance(exc, CLIENT_VALIDATION):
        return PermanentError(code, describe(exc))
    if isinstance(exc, (ClientError, BotoCoreError, ConnectionError, HTTPClientError, OSError)):
        return RetryableError(code, describe(exc))
    # A bug in our own code on this record (KeyError, TypeError...): keep it, do not loop on it.
    return PermanentError(code, f"{code} (an unexpected error; the record is parked whole)")
