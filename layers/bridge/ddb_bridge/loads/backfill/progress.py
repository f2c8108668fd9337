"""Checkpoints per segment in the progress table, and the lease that keeps one call on a segment."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from ...core.errors import RetryableError, error_code
from .clients import Json


# ---- progress ----------------------------------------------------------------------------------------------
class ProgressStore:
    """Checkpoints per segment, and a lease so that one call at a time copies a segment."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    @staticmethod
    def _key(backfill_id: str, part: str) -> Json:
        return {"pk": {"S": f"{backfill_id}#{part}"}}

    def header(self, backfill_id: str, values: Json, now: float) -> Json:
        """Create the backfill's header on its first run; on a later run, the header it was created with."""
        item = {
            **self._key(backfill_id, "plan"),
            "totalSegments": {"N": str(values["totalSegments"])},
            "writeMode": {"S": values["writeMode"]},
            "createdAt": {"N": str(int(now))},
            "expiresAt": {"N": str(int(now) + 30 * 86400)},
        }
        try:
            self.client.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)")
            return {"totalSegments": values["totalSegments"], "writeMode": values["writeMode"], "new": True}
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        found = self.client.get_item(TableName=self.table, Key=self._key(backfill_id, "plan"), ConsistentRead=True)[
            "Item"
        ]
        return {"totalSegments": int(found["totalSegments"]["N"]), "writeMode": found["writeMode"]["S"], "new": False}

    def existing(self, backfill_id: str) -> Json | None:
        """The header of an earlier run of this backfill, if any."""
        found = self.client.get_item(TableName=self.table, Key=self._key(backfill_id, "plan"), ConsistentRead=True).get(
            "Item"
        )
        if not found:
            return None
        return {"totalSegments": int(found["totalSegments"]["N"]), "writeMode": found["writeMode"]["S"]}

    def claim(self, backfill_id: str, segment: int, owner: str, now: float, lease_s: float) -> Json:
        """Take the segment's lease and return its checkpoint; RetryableError while another call holds it."""
        try:
            found = self.client.update_item(
                TableName=self.table,
                Key=self._key(backfill_id, str(segment)),
                ReturnValues="ALL_NEW",
                UpdateExpression="SET #owner = :me, leaseUntil = :until, expiresAt = :exp",
                ConditionExpression="attribute_not_exists(#owner) OR #owner = :me OR leaseUntil < :now",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={
                    ":me": {"S": owner},
                    ":until": {"N": str(now + lease_s)},
                    ":now": {"N": str(now)},
                    ":exp": {"N": str(int(now) + 30 * 86400)},
                },
            )["Attributes"]
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise RetryableError(
                    "SegmentBusy",
                    f"segment {segment} of backfill {backfill_id} is being copied by "
                    "another call (a stopped execution's call still finishing); retrying",
                ) from exc
            raise
        return _checkpoint(found)

    def save(self, backfill_id: str, segment: int, owner: str, progress: Json) -> None:
        """Advance the checkpoint, only while this call holds the lease."""
        values: Json = {
            ":me": {"S": owner},
            ":copied": {"N": str(progress["copied"])},
            ":skipped": {"N": str(progress["skipped"])},
            ":parked": {"N": str(progress.get("parked", 0))},
            ":scanned": {"N": str(progress["scanned"])},
            ":pages": {"N": str(progress["pages"])},
            ":done": {"BOOL": progress["done"]},
            ":lek": {"S": json.dumps(progress["lastEvaluatedKey"])},
        }
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(backfill_id, str(segment)),
                UpdateExpression="SET copied = :copied, skipped = :skipped, parked = :parked, scanned = :scanned, "
                "pages = :pages, done = :done, lastEvaluatedKey = :lek",
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise RetryableError("LeaseLost", f"segment {segment}: another call took the lease") from exc
            raise

    def release(self, backfill_id: str, segment: int, owner: str) -> None:
        """Give the lease back (the checkpoint stays)."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(backfill_id, str(segment)),
                UpdateExpression="REMOVE #owner",
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": {"S": owner}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def segments(self, backfill_id: str, total: int) -> list[Json]:
        """Every segment's checkpoint (consistent reads)."""
        keys = [self._key(backfill_id, str(s)) for s in range(total)]
        found: dict[str, Json] = {}
        for i in range(0, len(keys), 100):
            request: Json = {self.table: {"Keys": keys[i : i + 100], "ConsistentRead": True}}
            while request:
                page = self.client.batch_get_item(RequestItems=request)
                for item in page["Responses"].get(self.table, []):
                    found[item["pk"]["S"]] = item
                request = page.get("UnprocessedKeys") or {}
        return [_checkpoint(found.get(f"{backfill_id}#{s}", {})) for s in range(total)]


def _checkpoint(item: Json) -> Json:
    def n(name: str) -> int:
        return int(item[name]["N"]) if name in item else 0

    lek = json.loads(item["lastEvaluatedKey"]["S"]) if "lastEvaluatedKey" in item else None
    return {
        "copied": n("copied"),
        "skipped": n("skipped"),
        "parked": n("parked"),
        "scanned": n("scanned"),
        "pages": n("pages"),
        "done": bool(item.get("done", {}).get("BOOL", False)),
        "lastEvaluatedKey": lek,
    }
