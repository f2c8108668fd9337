"""Per key, the highest S3 `sequencer` applied: a small DynamoDB table with TTL, in the source account.

Why a table and not the target object's metadata: a delete leaves no object to carry it (yet a late,
older create must still be dropped after it), metadata cannot be updated without rewriting the object,
and a conditional UpdateItem keeps the maximum atomically when two invocations race on one key.
Sequencers are stored left-padded to 64 hex digits, so DynamoDB's string comparison is AWS's rule.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from ..core.errors import error_code
from .events import sequencer_key


class SequencerStore:
    """`latest(bucket, key)` and `record(bucket, key, sequencer)` on the sequencer table."""

    def __init__(self, client: Any, table: str, ttl_seconds: int) -> None:
        self.client = client
        self.table = table
        self.ttl_seconds = ttl_seconds

    @staticmethod
    def _key(bucket: str, key: str) -> dict[str, Any]:
        return {"pk": {"S": f"{bucket}/{key}"}}

    def latest(self, bucket: str, key: str) -> str | None:
        """The padded sequencer last applied to this key, if any."""
        item = self.client.get_item(TableName=self.table, Key=self._key(bucket, key), ConsistentRead=True).get("Item")
        return str(item["seq"]["S"]) if item and "seq" in item else None

    def record(self, bucket: str, key: str, sequencer: str) -> bool:
        """Keep `sequencer` if it is the highest seen for the key; False when a higher one is already there."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(bucket, key),
                UpdateExpression="SET seq = :s, expiresAt = :e",
                ConditionExpression="attribute_not_exists(seq) OR seq < :s",
                ExpressionAttributeValues={
                    ":s": {"S": sequencer_key(sequencer)},
                    ":e": {"N": str(int(time.time()) + self.ttl_seconds)},
                },
            )
            return True
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
