"""The bucket backfill's checkpoints in its progress table: the plan's ranges, each range's progress, a lease.

Like the table backfill's progress table: a restarted run with the same backfillId reuses the ranges it
planned first and resumes each range after its last checkpointed key (and a split object's upload).
"""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.exceptions import ClientError

from ..core.errors import RetryableError, error_code

Json = dict[str, Any]
COUNTERS = (
    "listed",
    "copied",
    "skipped",
    "failed",
    "bytesCopied",
    "bytesSkipped",
    "bytesFailed",
    "deleted",
    "wouldDelete",
)
TTL_SECONDS = 30 * 86400


class RangeProgress:
    """Checkpoints per range (`<backfillId>#<range>`) and the header (`<backfillId>#plan`)."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    @staticmethod
    def _key(backfill_id: str, part: str) -> Json:
        return {"pk": {"S": f"{backfill_id}#{part}"}}

    def existing(self, backfill_id: str) -> list[Json] | None:
        """The ranges an earlier run of this backfill planned, if any."""
        found = self.client.get_item(TableName=self.table, Key=self._key(backfill_id, "plan"), ConsistentRead=True)
        item = found.get("Item")
        return list(json.loads(item["ranges"]["S"])) if item else None

    def header(self, backfill_id: str, ranges: list[Json]) -> Json:
        """Store the plan's ranges on the first run; a later run gets the stored ones."""
        now = int(time.time())
        item = {
            **self._key(backfill_id, "plan"),
            "ranges": {"S": json.dumps(ranges)},
            "deleted": {"N": "0"},
            "expiresAt": {"N": str(now + TTL_SECONDS)},
        }
        try:
            self.client.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)")
            return {"ranges": ranges, "new": True}
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        return {"ranges": self.existing(backfill_id) or ranges, "new": False}

    def reserve_deletes(self, backfill_id: str, count: int, cap: int) -> bool:
        """Take `count` deletes from the run's cap atomically; False when that would pass the cap."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(backfill_id, "plan"),
                UpdateExpression="ADD deleted :n",
                ConditionExpression="deleted <= :room",
                ExpressionAttributeValues={":n": {"N": str(count)}, ":room": {"N": str(cap - count)}},
            )
            return True
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise

    def claim(self, backfill_id: str, rng: int, owner: str, lease_s: float) -> Json:
        """Take the range's lease; returns its checkpoint. RetryableError while another call holds it."""
        now = time.time()
        try:
            item = self.client.update_item(
                TableName=self.table,
                Key=self._key(backfill_id, str(rng)),
                ReturnValues="ALL_NEW",
                UpdateExpression="SET #o = :me, leaseUntil = :until, expiresAt = :exp",
                ConditionExpression="attribute_not_exists(#o) OR #o = :me OR leaseUntil < :now",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={
                    ":me": {"S": owner},
                    ":until": {"N": str(now + lease_s)},
                    ":now": {"N": str(now)},
                    ":exp": {"N": str(int(now) + TTL_SECONDS)},
                },
            )["Attributes"]
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise RetryableError("RangeBusy", f"range {rng} of {backfill_id} is held by another call") from exc
            raise
        return _checkpoint(item)

    def save(self, backfill_id: str, rng: int, owner: str, state: Json) -> None:
        """Advance the checkpoint, only while this call holds the lease."""
        values: Json = {f":{c}": {"N": str(int(state[c]))} for c in COUNTERS}
        values.update(
            {
                ":me": {"S": owner},
                ":after": {"S": json.dumps(state.get("after"))},
                ":job": {"S": json.dumps(state.get("job"))},
                ":failures": {"S": json.dumps(state.get("failures", [])[:10])},
                ":done": {"BOOL": bool(state.get("done"))},
            }
        )
        sets = ", ".join(f"{c} = :{c}" for c in COUNTERS)
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(backfill_id, str(rng)),
                UpdateExpression=f"SET {sets}, afterKey = :after, job = :job, failures = :failures, done = :done",
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise RetryableError("LeaseLost", f"range {rng}: another call took the lease") from exc
            raise

    def release(self, backfill_id: str, rng: int, owner: str) -> None:
        """Give the lease back (the checkpoint stays)."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(backfill_id, str(rng)),
                UpdateExpression="REMOVE #o",
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": {"S": owner}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise


def _checkpoint(item: Json) -> Json:
    state: Json = {c: int(item[c]["N"]) if c in item else 0 for c in COUNTERS}
    state["after"] = json.loads(item["afterKey"]["S"]) if "afterKey" in item else None
    state["job"] = json.loads(item["job"]["S"]) if "job" in item else None
    state["failures"] = json.loads(item["failures"]["S"]) if "failures" in item else []
    state["done"] = bool(item.get("done", {}).get("BOOL", False))
    return state
