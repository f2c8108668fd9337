"""Checkpoints of resumable workflows: one item per part of a run, and a lease that keeps one call per part.

A run (a backfill, a verify) has an id; each of its parts (a scan segment, a header) is one item keyed
`<run id>#<part>` in a progress table. A call claims a part's lease, advances its checkpoint only while
it holds the lease, and gives it back; a call of a stopped execution that is still running keeps its
lease until it ends or the lease expires, so a resumed execution never works on a part twice at once.
Fields are plain values: int and float (N), bool (BOOL), str (S); None removes a field.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from .errors import RetryableError, error_code

Json = dict[str, Any]
KEEP_DAYS = 30  # the table's TTL removes a run's checkpoints this long after its last claim


def encode_field(value: Any) -> Json:
    """A plain value as an attribute value."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    raise TypeError(f"a checkpoint field must be int, float, bool or str, got {type(value).__name__}")


def decode_item(item: Json) -> Json:
    """An item's fields as plain values (numbers as int when whole)."""
    out: Json = {}
    for name, value in item.items():
        ((tag, inner),) = value.items()
        if tag == "N":
            number = float(inner)
            out[name] = int(number) if number.is_integer() and "." not in inner and "e" not in inner.lower() else number
        else:
            out[name] = inner
    return out


class CheckpointStore:
    """One item per part of a run in a progress table; leases so that one call at a time works on a part."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    @staticmethod
    def key(run_id: str, part: str) -> Json:
        """The progress table's key of one part."""
        return {"pk": {"S": f"{run_id}#{part}"}}

    def create(self, run_id: str, part: str, fields: Json, now: float) -> tuple[Json, bool]:
        """Write a part once (a run's header); returns (its fields, True) the first time, else what is stored."""
        item = {**self.key(run_id, part), **{k: encode_field(v) for k, v in fields.items() if v is not None}}
        item["expiresAt"] = {"N": str(int(now) + KEEP_DAYS * 86400)}
        try:
            self.client.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)")
            return dict(fields), True
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
        found = self.read(run_id, part)
        assert found is not None, "a conditional put failed on an item that exists"
        return found, False

    def read(self, run_id: str, part: str) -> Json | None:
        """A part's fields (consistent read), or None."""
        found = self.client.get_item(TableName=self.table, Key=self.key(run_id, part), ConsistentRead=True).get("Item")
        return decode_item(found) if found else None

    def update(self, run_id: str, part: str, fields: Json) -> None:
        """Set fields of a part, whoever holds its lease (headers)."""
        names, values, expression = self._expression(fields)
        kwargs: Json = {"ExpressionAttributeNames": names}
        if values:
            kwargs["ExpressionAttributeValues"] = values
        self.client.update_item(TableName=self.table, Key=self.key(run_id, part), UpdateExpression=expression, **kwargs)

    def claim(self, run_id: str, part: str, owner: str, now: float, lease_s: float, *, busy: str) -> Json:
        """Take the part's lease and return its fields; RetryableError(`busy`) while another call holds it."""
        try:
            found = self.client.update_item(
                TableName=self.table,
                Key=self.key(run_id, part),
                ReturnValues="ALL_NEW",
                UpdateExpression="SET #owner = :me, leaseUntil = :until, expiresAt = :exp",
                ConditionExpression="attribute_not_exists(#owner) OR #owner = :me OR leaseUntil < :now",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={
                    ":me": {"S": owner},
                    ":until": {"N": str(now + lease_s)},
                    ":now": {"N": str(now)},
                    ":exp": {"N": str(int(now) + KEEP_DAYS * 86400)},
                },
            )["Attributes"]
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise RetryableError("SegmentBusy", busy) from exc
            raise
        return decode_item(found)

    def save(self, run_id: str, part: str, owner: str, fields: Json) -> None:
        """Advance the part's checkpoint, only while this call holds the lease."""
        names, values, expression = self._expression(fields)
        names["#owner"] = "owner"
        values[":me"] = {"S": owner}
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self.key(run_id, part),
                UpdateExpression=expression,
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                raise RetryableError("LeaseLost", f"part {part} of {run_id}: another call took the lease") from exc
            raise

    def release(self, run_id: str, part: str, owner: str) -> None:
        """Give the lease back (the checkpoint stays)."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self.key(run_id, part),
                UpdateExpression="REMOVE #owner",
                ConditionExpression="#owner = :me",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":me": {"S": owner}},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def read_many(self, run_id: str, parts: list[str]) -> dict[str, Json]:
        """The fields of many parts (consistent BatchGetItem); parts never written are absent."""
        keys = [self.key(run_id, p) for p in parts]
        found: dict[str, Json] = {}
        prefix = len(run_id) + 1
        for i in range(0, len(keys), 100):
            request: Json = {self.table: {"Keys": keys[i : i + 100], "ConsistentRead": True}}
            while request:
                page = self.client.batch_get_item(RequestItems=request)
                for item in page["Responses"].get(self.table, []):
                    found[item["pk"]["S"][prefix:]] = decode_item(item)
                request = page.get("UnprocessedKeys") or {}
        return found

    @staticmethod
    def _expression(fields: Json) -> tuple[dict[str, str], Json, str]:
        """Names, values and the UpdateExpression that sets (or, for None, removes) each field."""
        names: dict[str, str] = {}
        values: Json = {}
        sets: list[str] = []
        removes: list[str] = []
        for i, (name, value) in enumerate(sorted(fields.items())):
            names[f"#f{i}"] = name
            if value is None:
                removes.append(f"#f{i}")
            else:
                values[f":f{i}"] = encode_field(value)
                sets.append(f"#f{i} = :f{i}")
        clauses = ([f"SET {', '.join(sets)}"] if sets else []) + ([f"REMOVE {', '.join(removes)}"] if removes else [])
        return names, values, " ".join(clauses)
