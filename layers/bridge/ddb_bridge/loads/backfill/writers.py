"""The backfill's two ways to write a page: overwrite (BatchWriteItem) or live (conditional transactions).

An item the target refuses (validation, size) never fails its page: it is written apart from its
neighbours, and what is still refused comes back in `Written.refused` for the caller to park; the
rest of the page is copied. Error texts name keys (LOG_KEYS), never attribute values.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ...core.codec import Image, encode_image
from ...core.errors import PermanentError, RetryableError, classify, error_code
from ...core.keys import key_id
from ...core.settings import VersionAttrs
from ...core.versions import Condition, beats_stored, older_than, unchanged, version_of, wins
from ...table.tombstones import TOMBSTONE_ATTRS, Tombstones
from ...table.writer import BATCH_WRITE_MAX, Outcome, TableWriter, transaction_result
from .clients import Json

_WRITE_ATTEMPTS = 6


# ---- writers -----------------------------------------------------------------------------------------------
def _backoff(attempt: int) -> float:
    return random.uniform(0, min(5.0, 0.05 * 2**attempt))


@dataclass
class Written:
    """What one page did to the target; `refused` holds each item the target refused, with why."""

    copied: int = 0
    skipped: int = 0
    retries: int = 0
    requests: int = 0
    refused: list[tuple[Image, PermanentError]] = field(default_factory=list)


class OverwriteWriter:
    """BatchWriteItem, 25 items per request, concurrently, through `table.writer.TableWriter.batch_write`.

    That call retries UnprocessedItems with exponential backoff and full jitter; what is still left, or a
    throttled request, is sent again in the next round after another backoff. A request refused as a
    whole (one bad item refuses its 25) is written item by item, so only the bad item is refused.
    """

    def __init__(
        self,
        client: Any,
        table: str,
        attrs: VersionAttrs,
        *,
        pool: ThreadPoolExecutor,
        sleep: Callable[[float], None],
        rounds: int = _WRITE_ATTEMPTS,
    ) -> None:
        self.writer = TableWriter(client, table, mode="ordered", attrs=attrs, sleep=sleep)
        self.client = client
        self.table = table
        self.pool = pool
        self.sleep = sleep
        self.rounds = rounds

    def _send(self, requests: list[Json]) -> tuple[list[Json], list[tuple[Image, PermanentError]]]:
        """One chunk: what is left to retry, and the items refused for good."""
        try:
            return self.writer.batch_write({self.table: requests}).get(self.table, []), []
        except Exception as exc:  # noqa: BLE001 - classified: retried next round, or isolated
            error = classify(exc)
            if isinstance(error, RetryableError):
                return requests, []
        if len(requests) == 1:
            return [], [(requests[0]["PutRequest"]["Item"], error)]
        left: list[Json] = []
        refused: list[tuple[Image, PermanentError]] = []
        for request in requests:  # isolate the bad item: its neighbours are written one by one
            item = request["PutRequest"]["Item"]
            try:
                self.writer._count_request()
                self.client.put_item(TableName=self.table, Item=item)
            except Exception as exc:  # noqa: BLE001 - classified
                one = classify(exc)
                if isinstance(one, PermanentError):
                    refused.append((item, one))
                else:
                    left.append(request)
        return left, refused

    def write(self, items: list[Image]) -> Written:
        """Write every item; RetryableError if some stay unprocessed; refused items come back in `refused`."""
        pending: list[Json] = [{"PutRequest": {"Item": item}} for item in items]
        done = Written()
        before = self.writer.requests
        for attempt in range(self.rounds):
            chunks = [pending[i : i + BATCH_WRITE_MAX] for i in range(0, len(pending), BATCH_WRITE_MAX)]
            left: list[Json] = []
            refused_now = 0
            for unprocessed, refused in self.pool.map(self._send, chunks):
                left.extend(unprocessed)
                done.refused.extend(refused)
                refused_now += len(refused)
            done.copied += len(pending) - len(left) - refused_now
            pending = left
            if not pending:
                break
            done.retries += len(pending)
            self.sleep(_backoff(attempt + 3))
        done.requests = self.writer.requests - before
        if pending:
            raise RetryableError(
                "UnprocessedItems",
                f"{len(pending)} items still unprocessed after {self.rounds} rounds of BatchWriteItem",
            )
        return done


class LiveWriter:
    """Conditional copies that lose to every live write and every live delete (tombstones).

    In `lww` mode a stamped item is written when its version beats what the target holds, decided as
    replication decides it (docs/design.md#version-stamps): a fast-path condition, and when it fails,
    the stored item comes back, the versions are compared here, and the write is retried guarded by
    the exact stamp it read. Otherwise (ordered replication, or an unstamped item) it fills holes only.
    """

    def __init__(
        self,
        client: Any,
        table: str,
        key_names: tuple[str, ...],
        tombstones: Tombstones,
        *,
        replication_mode: str,
        attrs: VersionAttrs,
        pool: ThreadPoolExecutor | None = None,
        sleep: Callable[[float], None],
        attempts: int = _WRITE_ATTEMPTS,
    ) -> None:
        self.client = client
        self.table = table
        self.key_names = key_names
        self.tombstones = tombstones
        self.replication_mode = replication_mode
        self.attrs = attrs
        self.pool = pool
        self.sleep = sleep
        self.attempts = attempts

    def transaction(self, item: Image, guard: Image | None = None, guarded: bool = False) -> list[Json]:
        """The ConditionCheck on the tombstone and the conditional Put for one item.

        `guarded`: the fast path failed and code decided the item wins over `guard`, the stored item.
        """
        key = {name: item[name] for name in self.key_names}
        version = version_of(item, self.attrs) if self.replication_mode == "lww" else None
        if version is None:
            # No version to compare (ordered replication, or an unstamped item): fill holes only.
            target = Condition("attribute_not_exists(#k)", {"#k": self.key_names[0]}, {})
            tomb = Condition("attribute_not_exists(pk)", {}, {})
        else:
            target = unchanged(guard, self.attrs) if guarded else beats_stored(version, self.attrs)
            tomb = older_than(version, TOMBSTONE_ATTRS)
        return [
            {
                "ConditionCheck": {
                    "TableName": self.tombstones.table,
                    "Key": self.tombstones.key_of(key_id(encode_image(key))),
                    **tomb.kwargs(),
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": item,
                    **target.kwargs(),
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
        ]

    def _one(self, item: Image) -> Outcome | PermanentError | RetryableError:
        guard: Image | None = None
        guarded = False
        for _ in range(self.attempts):
            try:
                self.client.transact_write_items(TransactItems=self.transaction(item, guard, guarded))
                return Outcome.APPLIED
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    return classify(exc)
                reasons = exc.response.get("CancellationReasons") or []
                result = transaction_result(exc)
                if result is not Outcome.STALE or len(reasons) != 2:
                    return result
                if reasons[0].get("Code") == "ConditionalCheckFailed":
                    return Outcome.STALE  # a live delete at least as new: replication owns this key
                version = version_of(item, self.attrs) if self.replication_mode == "lww" else None
                stored = reasons[1].get("Item")
                if version is None or not wins(version, version_of(stored, self.attrs)):
                    return Outcome.STALE  # a newer live write (or the key exists: fill holes only)
                guard, guarded = stored, True  # lost only the fast path (another stamp form): decide here
            except Exception as exc:  # noqa: BLE001 - classified
                return classify(exc)
        return RetryableError("ConditionRetries", "the item kept changing under every guarded write")

    def write(self, items: list[Image]) -> Written:
        """Copy what may be copied, skip what live replication owns; RetryableError when conflicts persist."""
        done = Written()
        pending = items
        for attempt in range(self.attempts):
            results = list(self.pool.map(self._one, pending)) if self.pool else [self._one(i) for i in pending]
            done.requests += len(pending)
            retry = []
            for item, result in zip(pending, results, strict=True):
                if result is Outcome.APPLIED:
                    done.copied += 1
                elif isinstance(result, Outcome):
                    done.skipped += 1  # a newer live write, or a live delete: replication owns this key
                elif isinstance(result, PermanentError):
                    done.refused.append((item, result))
                else:
                    retry.append(item)  # throttled, or a transaction conflict with a live write
            pending = retry
            if not pending:
                return done
            done.retries += len(pending)
            self.sleep(_backoff(attempt + 3))
        raise RetryableError(
            "TransactionsFailing", f"{len(pending)} items still conflicting or throttled after {self.attempts} attempts"
        )
