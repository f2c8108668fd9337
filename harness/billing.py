"""What DynamoDB and Kinesis bill for the requests a function sends: a meter on boto3 clients.

`Meter.watch_dynamodb(client, role)` and `Meter.watch_kinesis(client, role)` hook a client's botocore
events; every call it makes is billed as AWS documents it, and tallied under the role (relay,
applier, ...). The rules (AWS's "Item sizes and capacity unit consumption" and "Capacity management
for transactions" pages of the DynamoDB Developer Guide):

- Writes: 1 write unit per KB (1,024 bytes, rounded up per item, at least 1). PutItem bills the larger
  of the item it replaces and the new one, UpdateItem the larger of before and after, DeleteItem the
  deleted item (1 when nothing was there). BatchWriteItem bills each processed item as its own
  PutItem / DeleteItem; UnprocessedItems are not written and not billed.
- A conditional write whose condition fails still bills: as the write would have (the larger of the
  existing item and the new one; 1 when there is no item).
- Transactions: "DynamoDB performs two underlying reads or writes of every item in the transaction:
  one to prepare the transaction and one to commit the transaction" - every action of a
  TransactWriteItems bills twice its item's units, a ConditionCheck included (a ConditionCheck is
  billed as a write of the checked item; AWS's pages do not spell it out, measurements against
  DynamoDB show 2 write units for a small item). What a cancelled transaction costs is not
  documented (its response carries no ConsumedCapacity): it is billed here for its prepare phase,
  once per action, and those units are also reported apart (`cancelled_transaction_write_units`), so
  the true figure lies between the total minus them (cancellations free) and the total plus them
  (cancellations billed as if committed).
- Reads: 1 read unit per 4 KB (rounded up per item) strongly consistent, half that eventually
  consistent; a key that is not there still bills the minimum; BatchGetItem bills each key as a
  GetItem; Query and Scan bill the sum of the returned items' sizes, rounded up once.
- Kinesis: each record put successfully is a record, 25 KB PUT payload units (provisioned mode,
  rounded up per record), and 1 KB-rounded ingested data (on-demand mode). `border_bytes` counts the
  HTTP body of every PutRecords/PutRecord attempt: what crosses the border.

Sizes of items already in a table (a replaced or deleted item, a checked one) come from a `Sizer`:
`moto_sizer()` reads them from the in-process moto backend, beside the request (no extra request).
Without a sizer they count as absent (1 unit): an under-estimate, said so where it is used.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ddb_bridge.core.codec import encode_image, item_size

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
KINESIS_PUT_UNIT_BYTES = 25 * 1024
KINESIS_INGEST_ROUND_BYTES = 1024
TRANSACTION_FACTOR = 2
CANCELLED_TRANSACTION_FACTOR = 1  # the prepare phase only: see the module docstring

Sizer = Callable[[str, str, dict[str, Any]], int | None]
"""(region, table, an item or key in client form) -> the size of the stored item with that key, None if absent."""


def write_units(size: int | None) -> int:
    """Write units of one item write: 1 per started KB, at least 1 (an absent item bills 1)."""
    return max(1, math.ceil((size or 0) / WRITE_UNIT_BYTES))


def read_units(size: int | None, *, consistent: bool) -> float:
    """Read units of one item read: 1 per started 4 KB (at least 1), halved when eventually consistent."""
    units = max(1, math.ceil((size or 0) / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


@dataclass
class Bill:
    """What a set of calls costs."""

    write_units: int = 0
    read_units: float = 0.0
    failed_conditional_write_units: int = 0  # part of write_units: conditions that failed
    cancelled_transaction_write_units: int = 0  # part of write_units: cancellations, billed for their prepare phase
    write_units_by_table: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    kinesis_records: int = 0
    kinesis_put_payload_units: int = 0
    kinesis_ingest_bytes: int = 0  # 1 KB-rounded per record (on-demand)
    kinesis_data_bytes: int = 0  # data + partition key of the records put
    border_bytes: int = 0  # HTTP bodies of every PutRecords/PutRecord attempt

    def add(self, other: Bill) -> None:
        """Add another bill to this one."""
        for name in (
            "write_units",
            "read_units",
            "failed_conditional_write_units",
            "cancelled_transaction_write_units",
            "kinesis_records",
            "kinesis_put_payload_units",
            "kinesis_ingest_bytes",
            "kinesis_data_bytes",
            "border_bytes",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.write_units_by_table.update(other.write_units_by_table)
        self.requests.update(other.requests)

    @property
    def request_count(self) -> int:
        """Every request sent (DynamoDB and Kinesis)."""
        return sum(self.requests.values())

    def per(self, changes: int) -> dict[str, Any]:
        """The bill divided by a number of changes (the figures a benchmark prints)."""
        n = max(1, changes)
        return {
            "billed_write_units": round(self.write_units / n, 4),
            "billed_read_units": round(self.read_units / n, 4),
            "failed_conditional_write_units": round(self.failed_conditional_write_units / n, 4),
            "cancelled_transaction_write_units": round(self.cancelled_transaction_write_units / n, 4),
            "billed_write_units_range": [
                round((self.write_units - self.cancelled_transaction_write_units) / n, 4),
                round((self.write_units + self.cancelled_transaction_write_units) / n, 4),
            ],
            "requests": round(self.request_count / n, 4),
            "kinesis_records": round(self.kinesis_records / n, 4),
            "kinesis_put_payload_units": round(self.kinesis_put_payload_units / n, 4),
            "kinesis_ingest_kb": round(self.kinesis_ingest_bytes / KINESIS_INGEST_ROUND_BYTES / n, 4),
            "border_bytes": round(self.border_bytes / n, 1),
        }


# -- the rules, as pure functions of one call -----------------------------------------------------------
@dataclass(frozen=True)
class Write:
    """One item write inside a call: its table, the stored item's size before, and the new item's size."""

    table: str
    before: int | None  # the stored item (None: absent)
    after: int | None  # the item written (None: a delete or a check)
    kind: str  # "put", "update", "delete", "check"
    key: dict[str, Any] | None = None  # an update's key: its size after the call is read back

    def units(self) -> int:
        """Units of this write, applied or refused (a refused conditional write bills the same)."""
        if self.kind == "delete" or self.kind == "check":
            return write_units(self.before)
        return write_units(max(self.before or 0, self.after or 0))


def transaction_units(writes: list[Write]) -> int:
    """A TransactWriteItems: every action bills twice (prepare and commit), a ConditionCheck included."""
    return TRANSACTION_FACTOR * sum(w.units() for w in writes)


def batch_get_units(found_sizes: list[int], missing: int, *, consistent: bool) -> float:
    """A BatchGetItem's units for one table: each returned item as a GetItem, each missing key the minimum."""
    return sum(read_units(s, consistent=consistent) for s in found_sizes) + missing * read_units(
        None, consistent=consistent
    )


def query_units(sizes: list[int], *, consistent: bool) -> float:
    """A Query or Scan: the returned items' sizes summed, then rounded up to 4 KB once."""
    units = max(1, math.ceil(sum(sizes) / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


# -- sizes of stored items ----------------------------------------------------------------------------
def moto_sizer(account: str = "123456789012") -> Sizer:
    """Sizes read from the moto backend running in this process (no request; under moto's own lock)."""
    from moto.dynamodb.models import dynamodb_backends
    from moto.dynamodb.models.dynamo_type import DynamoType

    from . import moto_patches

    def size(region: str, table_name: str, item: dict[str, Any]) -> int | None:
        with moto_patches._LOCK:  # moto's own lock: the item is read as no request is changing it
            table = dynamodb_backends[account][region].tables.get(table_name)
            if table is None or table.hash_key_attr not in item:
                return None
            range_attr = table.range_key_attr
            if range_attr and range_attr not in item:
                return None
            hash_value = DynamoType(encode_image({"h": item[table.hash_key_attr]})["h"])
            range_value = DynamoType(encode_image({"r": item[range_attr]})["r"]) if range_attr else None
            stored = table.get_item(hash_value, range_value)
            return None if stored is None else item_size(stored.to_json()["Attributes"])

    return size


def _no_sizer(region: str, table: str, key: dict[str, Any]) -> int | None:
    return None


# -- the meter ----------------------------------------------------------------------------------------
class Meter:
    """Bills every call of the clients it watches, per role."""

    def __init__(self, sizer: Sizer | None = None) -> None:
        self.sizer = sizer or _no_sizer
        self._bills: dict[str, Bill] = {}
        self._lock = threading.Lock()

    def bill(self, role: str | None = None) -> Bill:
        """The bill of one role, or of all of them."""
        with self._lock:
            total = Bill()
            for name, bill in self._bills.items():
                if role is None or name == role:
                    total.add(bill)
            return total

    def roles(self) -> list[str]:
        """The roles billed so far."""
        with self._lock:
            return sorted(self._bills)

    def _charge(self, role: str, update: Callable[[Bill], None]) -> None:
        with self._lock:
            update(self._bills.setdefault(role, Bill()))

    # -- DynamoDB --------------------------------------------------------------------------------
    def watch_dynamodb(self, client: Any, role: str) -> None:
        """Bill every DynamoDB call `client` makes under `role`."""
        region = client.meta.region_name
        events = client.meta.events

        def before(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
            context["ddbb_billing"] = self._plan(region, model.name, params)

        def after(parsed: dict[str, Any], model: Any, context: dict[str, Any], http_response: Any, **_: Any) -> None:
            status = getattr(http_response, "status_code", 200)
            self._settle(role, region, model.name, context.get("ddbb_billing"), parsed, status)

        events.register("before-parameter-build.dynamodb", before)
        events.register("after-call.dynamodb", after)

    def _plan(self, region: str, operation: str, params: dict[str, Any]) -> Any:
        """What a call is about to write: the sizes needed to bill it, taken before it runs."""
        size = self.sizer
        if operation == "PutItem":
            table, item = params["TableName"], params["Item"]
            return [Write(table, size(region, table, item), item_size(item), "put")]
        if operation in ("DeleteItem", "UpdateItem"):
            table, key = params["TableName"], params["Key"]
            kind = "delete" if operation == "DeleteItem" else "update"
            return [Write(table, size(region, table, key), None, kind, key)]
        if operation == "BatchWriteItem":
            writes: dict[str, list[tuple[str, Write]]] = {}
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        item = request["PutRequest"]["Item"]
                        write = Write(table, size(region, table, item), item_size(item), "put")
                    else:
                        write = Write(table, size(region, table, request["DeleteRequest"]["Key"]), None, "delete")
                    writes.setdefault(table, []).append((_canonical(request), write))
            return writes
        if operation == "TransactWriteItems":
            planned: list[Write] = []
            for action in params["TransactItems"]:
                ((kind, body),) = action.items()
                table = body["TableName"]
                if kind == "Put":
                    planned.append(Write(table, size(region, table, body["Item"]), item_size(body["Item"]), "put"))
                else:
                    what = {"Update": "update", "Delete": "delete"}.get(kind, "check")
                    planned.append(Write(table, size(region, table, body["Key"]), None, what))
            return planned
        if operation in ("GetItem", "BatchGetItem", "Query", "Scan"):
            return params
        return None

    def _settle(
        self, role: str, region: str, operation: str, planned: Any, parsed: dict[str, Any], status: int
    ) -> None:
        """Bill a finished call from what was planned and what came back."""
        error = (parsed.get("Error") or {}).get("Code") if status >= 300 else None
        bill = Bill()
        bill.requests[operation] += 1

        def charge(write: Write, factor: int = 1, *, failed: bool = False, cancelled: bool = False) -> None:
            units = factor * write.units()
            bill.write_units += units
            bill.write_units_by_table[write.table] += units
            bill.failed_conditional_write_units += units if failed else 0
            bill.cancelled_transaction_write_units += units if cancelled else 0

        if operation in ("PutItem", "DeleteItem", "UpdateItem") and planned:
            (write,) = planned
            if operation == "UpdateItem" and error is None and write.key is not None:
                attributes = parsed.get("Attributes")  # ALL_NEW, else the stored item read back beside the call
                after = item_size(attributes) if attributes else self.sizer(region, write.table, write.key)
                write = Write(write.table, write.before, after, "update")
            if error in (None, "ConditionalCheckFailedException"):
                charge(write, failed=error is not None)
        elif operation == "BatchWriteItem" and planned and error is None:
            unprocessed = parsed.get("UnprocessedItems") or {}
            for table, writes in planned.items():
                left = Counter(_canonical(r) for r in unprocessed.get(table, []))
                for request, write in writes:
                    if left[request]:
                        left[request] -= 1
                    else:
                        charge(write)
        elif operation == "TransactWriteItems" and planned and error in (None, "TransactionCanceledException"):
            reasons = parsed.get("CancellationReasons") or []
            refused = error is not None and all(r.get("Code") in ("None", "ConditionalCheckFailed") for r in reasons)
            if error is None or refused:
                factor = CANCELLED_TRANSACTION_FACTOR if error else TRANSACTION_FACTOR
                for write in planned:
                    charge(write, factor, cancelled=error is not None)
        elif operation == "GetItem" and planned and error is None:
            found = parsed.get("Item")
            consistent = bool(planned.get("ConsistentRead"))
            bill.read_units += read_units(item_size(found) if found else None, consistent=consistent)
        elif operation == "BatchGetItem" and planned and error is None:
            unprocessed = parsed.get("UnprocessedKeys") or {}
            for table, spec in planned["RequestItems"].items():
                found = parsed.get("Responses", {}).get(table, [])
                asked = len(spec["Keys"]) - len((unprocessed.get(table) or {}).get("Keys", []))
                bill.read_units += batch_get_units(
                    [item_size(i) for i in found],
                    max(0, asked - len(found)),
                    consistent=bool(spec.get("ConsistentRead")),
                )
        elif operation in ("Query", "Scan") and planned and error is None:
            sizes = [item_size(i) for i in parsed.get("Items", [])]
            bill.read_units += query_units(sizes, consistent=bool(planned.get("ConsistentRead")))
        self._charge(role, lambda b: b.add(bill))

    # -- Kinesis ----------------------------------------------------------------------------------
    def watch_kinesis(self, client: Any, role: str) -> None:
        """Bill every PutRecords / PutRecord `client` makes under `role` (records, units, border bytes)."""
        events = client.meta.events

        def before(params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
            if model.name == "PutRecords":
                context["ddbb_billing"] = [_record_size(r) for r in params["Records"]]
            elif model.name == "PutRecord":
                context["ddbb_billing"] = [_record_size(params)]

        def sent(request: Any, **_: Any) -> None:
            body = request.body or b""
            size = len(body) if isinstance(body, (bytes, bytearray)) else len(str(body).encode())
            self._charge(role, lambda b: setattr(b, "border_bytes", b.border_bytes + size))

        def after(parsed: dict[str, Any], model: Any, context: dict[str, Any], http_response: Any, **_: Any) -> None:
            sizes = context.get("ddbb_billing")
            bill = Bill()
            bill.requests[model.name] += 1
            if sizes is not None and getattr(http_response, "status_code", 200) < 300:
                results = parsed.get("Records") if model.name == "PutRecords" else [parsed]
                for size, result in zip(sizes, results or [], strict=False):
                    if result.get("ErrorCode"):
                        continue
                    bill.kinesis_records += 1
                    bill.kinesis_data_bytes += size
                    bill.kinesis_put_payload_units += math.ceil(size / KINESIS_PUT_UNIT_BYTES)
                    bill.kinesis_ingest_bytes += math.ceil(size / KINESIS_INGEST_ROUND_BYTES) * (
                        KINESIS_INGEST_ROUND_BYTES
                    )
            self._charge(role, lambda b: b.add(bill))

        events.register("before-parameter-build.kinesis", before)
        events.register("before-send.kinesis.PutRecords", sent)
        events.register("before-send.kinesis.PutRecord", sent)
        events.register("after-call.kinesis", after)


def _record_size(entry: dict[str, Any]) -> int:
    data = entry["Data"]
    raw = data if isinstance(data, (bytes, bytearray)) else str(data).encode("utf-8")
    return len(raw) + len(entry["PartitionKey"].encode("utf-8"))


def _canonical(request: dict[str, Any]) -> str:
    """A BatchWriteItem request's identity (binary as hex), to match UnprocessedItems to what was sent."""
    return json.dumps(request, sort_keys=True, default=lambda b: bytes(b).hex())
