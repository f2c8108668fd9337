"""Lambda batch plumbing every stream function shares: park or retry, settle, publish the counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from .errors import PermanentError, RetryableError
from .observability import LAG, MetricUnit, logger, metrics
from .parking import ParkingLot


class RecordFailed(Exception):
    """Raised for a record to retry; BatchProcessor turns it into a batch item failure."""


def park_or_retry(parking: ParkingLot, record: dict[str, Any], error: PermanentError) -> bool:
    """Park the whole record with its reason; False when SQS could not take it (retry the record instead)."""
    try:
        parking.park(record, reason=error.reason, error=str(error))
    except RetryableError:
        return False
    logger.warning("record parked", extra={"reason": error.reason, "error": str(error)[:500]})
    return True


def park_or_fail(
    parking: ParkingLot, record: dict[str, Any], error: PermanentError, failed: set[int], parked: set[int] | None = None
) -> bool:
    """Park the whole record; True when it was parked now.

    When SQS cannot take it, the record's id joins `failed`, so it is retried instead of dropped. With
    `parked`, a record that holds several changes is parked once, however many of them fail.
    """
    if parked is not None and id(record) in parked:
        return False
    if not park_or_retry(parking, record, error):
        failed.add(id(record))
        return False
    if parked is not None:
        parked.add(id(record))
    return True


def settle(event: dict[str, Any], failed: set[int], event_type: EventType, context: Any) -> dict[str, Any]:
    """The partial batch response: every record whose id is in `failed` is reported, through BatchProcessor.

    Lambda resumes from the lowest reported sequence number, so the suffix is replayed in order.
    """

    def record_handler(record: Any) -> None:  # Powertools passes the record by this keyword
        if id(record.raw_event) in failed:
            raise RecordFailed("will be retried in order")

    processor = BatchProcessor(event_type=event_type, raise_on_entire_batch_failure=False)
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )


def publish(counts: Mapping[str, int], *, lags_ms: Sequence[int] = ()) -> None:
    """One batch's counters as EMF metrics (no hot item anywhere), and its worst lag (`observability.LAG`)."""
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if lags_ms:
        metrics.add_metric(name=LAG.name, unit=LAG.unit, value=max(lags_ms))
