"""S3 failures: which park the object's event (403 on a key, a key the mapping cannot express) and which retry."""

from __future__ import annotations

from botocore.exceptions import ClientError

from ..core.errors import CREDENTIAL_CODES, PermanentError, RetryableError, classify, error_code

# Errors no retry can fix for this key: the event is parked whole with the reason.
PERMANENT_S3_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidObjectState",  # archived (Glacier / Deep Archive) and not restored
        "InvalidStorageClass",
        "KeyTooLongError",
        "EntityTooLarge",
        "InvalidArgument",
        "InvalidRequest",
        "InvalidBucketName",
        "NoSuchBucket",
        "MethodNotAllowed",
        "KMS.DisabledException",
        "KMS.NotFoundException",
        "KMS.KMSInvalidStateException",
        "KMS.AccessDeniedException",
    }
)


class SourceChanged(RetryableError):
    """The source object changed while it was being copied (an ETag precondition failed): copy it again."""

    def __init__(self, message: str) -> None:
        super().__init__("SourceChanged", message)


def status_of(exc: BaseException) -> int:
    """The HTTP status of a ClientError (0 otherwise)."""
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return 0


def is_not_found(exc: BaseException) -> bool:
    """A 404 (NoSuchKey, or a HEAD's bare 404, or a delete marker)."""
    return isinstance(exc, ClientError) and (status_of(exc) == 404 or error_code(exc) in ("NoSuchKey", "404"))


def is_no_such_upload(exc: BaseException) -> bool:
    """The multipart upload is gone (completed or aborted)."""
    return isinstance(exc, ClientError) and error_code(exc) == "NoSuchUpload"


def is_precondition_failed(exc: BaseException) -> bool:
    """An If-Match / x-amz-copy-source-if-match precondition failed (the source changed)."""
    return isinstance(exc, ClientError) and (status_of(exc) == 412 or error_code(exc) == "PreconditionFailed")


def classify_s3(exc: BaseException) -> PermanentError | RetryableError:
    """Permanent (park: 403 on a key, archived object, bad key, missing bucket) or retryable (throttling, 5xx)."""
    if isinstance(exc, (PermanentError, RetryableError)):
        return exc
    code = error_code(exc)
    if isinstance(exc, ClientError):
        if code in CREDENTIAL_CODES:
            return RetryableError(code, str(exc))
        if code in PERMANENT_S3_CODES or (status_of(exc) == 403 and code in ("403", "Forbidden")):
            return PermanentError(code if code != "403" else "AccessDenied", str(exc))
    return classify(exc)
