"""The backfill's two ways to write a page: overwrite (BatchWriteItem) or live (conditional transactions)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ...core.codec import Image, encode_image
from ...core.errors import PermanentError, RetryableError, classify, error_code
from ...core.keys import key_id
from ...core.settings import VersionAttrs
from ...core.versions import Condition, older_than, version_of
from ...table.tombstones import TOMBSTONE_ATTRS, Tombstones
from ...table.writer import BATCH_WRITE_MAX, Outcome, TableWriter, transaction_result
from .clients import Json

_WRITE_ATTEMPTS = 6


# ---- writers -----------------------------------------------------------------------------------------------
def _backoff(attempt: int) -> float:
    return random.uniform(0, min(5.0, 0.05 * 2**attempt))


@dataclass
class Written:
    """What one page did to the target."""

    copied: int = 0
    skipped: int = 0
    retries: int = 0
    requests: int = 0


class OverwriteWriter:
    """BatchWriteItem, 25 items per request, concurrently, through `apply.TableWriter.batch_write`.

    That call retries UnprocessedItems with exponential backoff and full jitter; what is still left, or a
    throttled request, is sent again in the next round after another backoff.
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
        self.table = table
        self.pool = pool
        self.sleep = sleep
        self.rounds = rounds

    def _send(self, requests: list[Json]) -> tuple[list[Json], PermanentError | RetryableError | None]:
        try:
            return self.writer.batch_write({self.table: requests}).get(self.table, []), None
        except Exception as exc:  # noqa: BLE001 - classified: retried next round, or fails the call
            return requests, classify(exc)

    def write(self, items: list[Image]) -> Written:
        """Write every item; RetryableError if some stay unprocessed, PermanentError when DynamoDB refuses one."""
        pending: list[Json] = [{"PutRequest": {"Item": item}} for item in items]
        done = Written()
        before = self.writer.requests
        for attempt in range(self.rounds):
            chunks = [pending[i : i + BATCH_WRITE_MAX] for i in range(0, len(pending), BATCH_WRITE_MAX)]
            left: list[Json] = []
            for unprocessed, error in self.pool.map(self._send, chunks):
                if isinstance(error, PermanentError):
                    key = json.dumps(encode_image(unprocessed[0]["PutRequest"]["Item"]))[:200]
                    raise PermanentError(error.reason, f"the target refuses items (first: {key}): {error}")
                left.extend(unprocessed)
            done.copied += len(pending) - len(left)
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
    """Conditional copies that lose to every live write and every live delete (tombstones)."""

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

    def transaction(self, item: Image) -> list[Json]:
        """The ConditionCheck on the tombstone and the conditional Put for one item."""
        key = {name: item[name] for name in self.key_names}
        version = version_of(item, self.attrs) if self.replication_mode == "lww" else None
        if version is None:
            # No version to compare (ordered replication, or an unstamped item): fill holes only.
            target = Condition("attribute_not_exists(#k)", {"#k": self.key_names[0]}, {})
            tomb = Condition("attribute_not_exists(pk)", {}, {})
        else:
            target = older_than(version, self.attrs)
            tomb = older_than(version, TOMBSTONE_ATTRS)
        tomb_kwargs = tomb.kwargs()
        if not tomb_kwargs["ExpressionAttributeNames"]:
            del tomb_kwargs["ExpressionAttributeNames"]
        return [
            {
                "ConditionCheck": {
                    "TableName": self.tombstones.table,
                    "Key": self.tombstones.key_of(key_id(encode_image(key))),
                    **tomb_kwargs,
                }
            },
            {"Put": {"TableName": self.table, "Item": item, **target.kwargs()}},
        ]

    def _one(self, item: Image) -> Outcome | PermanentError | RetryableError:
        try:
            self.client.transact_write_items(TransactItems=self.transaction(item))
            return Outcome.APPLIED
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                return transaction_result(exc)
            return classify(exc)
        except Exception as exc:  # noqa: BLE001 - classified
            return classify(exc)

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
                    raise PermanentError(
                        result.reason,
                        f"item {json.dumps(encode_image(item))[:300]} cannot be written to the target: {result}",
                    )
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
