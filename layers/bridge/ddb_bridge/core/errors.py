"""Which failures are retried in order and which park a record (docs/design.md#failures)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

# Errors that will never succeed on retry: the record is parked whole and the batch goes on.
PERMANENT_CODES = frozenset(
    {
        "ValidationException",
        "SerializationException",
        "ItemCollectionSizeLimitExceededException",
        "InvalidArgumentException",
    }
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


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError, else the exception's class name."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


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
        return PermanentError(code, str(exc))
    if isinstance(exc, (ClientError, BotoCoreError, ConnectionError, HTTPClientError, OSError)):
        return RetryableError(code, str(exc))
    # A bug in our own code on this record (KeyError, TypeError...): keep it, do not loop on it.
    return PermanentError(code, f"{code}: {exc}")
