"""A workflow step run as one Lambda call: the time it may work, and its errors classified for Retry/Catch.

Every Step Functions workflow of the layer (full load, backfill, verify, bucket backfill) calls its function
once per step; these are the rules all of them follow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .errors import PermanentError, RetryableError, classify, is_credential_error

SAFETY_SECONDS = 60.0  # left to the call after its work: the last checkpoint and the answer


def call_budget(context: Any, *, most: float | None = None) -> float:
    """Seconds a step may work: the invocation's remaining time less SAFETY_SECONDS, capped at `most`, at least 1."""
    left = context.get_remaining_time_in_millis() / 1000 - SAFETY_SECONDS
    return max(1.0, left if most is None else min(most, left))


@contextmanager
def step_errors(
    refresh: Callable[[], None],
    classify_error: Callable[[BaseException], PermanentError | RetryableError] = classify,
) -> Iterator[None]:
    """Any error of the block leaves as RetryableError (the state retries) or PermanentError (the run fails).

    Our own two pass as they are; a credential error first drops the target session (`refresh`), so the
    retry authenticates afresh.
    """
    try:
        yield
    except (PermanentError, RetryableError):
        raise
    except Exception as exc:  # every error is classified for the state's Retry/Catch
        if is_credential_error(exc):
            refresh()
        raise classify_error(exc) from exc
