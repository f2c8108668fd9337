"""Tables and throughput: a table's description and keys, what it can take, a token bucket, what a request costs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from .errors import error_code

Json = dict[str, Any]

ON_DEMAND_WARM_DEFAULT = {"read": 12000, "write": 4000}  # a new on-demand table's initial throughput


# ---- a table ------------------------------------------------------------------------------------------------
def describe_table(client: Any, table: str) -> Json | None:
    """DescribeTable's `Table`, or None when there is no such table."""
    try:
        return dict(client.describe_table(TableName=table)["Table"])
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise


def key_schema(desc: Json) -> list[str]:
    """A table's keys as `name (HASH, S)`, in order: two tables take the same items when these are equal."""
    types = {a["AttributeName"]: a["AttributeType"] for a in desc["AttributeDefinitions"]}
    return [f"{k['AttributeName']} ({k['KeyType']}, {types.get(k['AttributeName'])})" for k in desc["KeySchema"]]


# ---- what a table can take -----------------------------------------------------------------------------------
def table_capacity(desc: Json) -> Json:
    """Read and write units per second the table can take, and where the figure comes from."""
    billing = (desc.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    if billing == "PROVISIONED":
        pt = desc.get("ProvisionedThroughput") or {}
        return {
            "read": int(pt.get("ReadCapacityUnits") or 1),
            "write": int(pt.get("WriteCapacityUnits") or 1),
            "basis": "provisioned capacity",
        }
    warm = desc.get("WarmThroughput") or {}
    read = int(warm.get("ReadUnitsPerSecond") or ON_DEMAND_WARM_DEFAULT["read"])
    write = int(warm.get("WriteUnitsPerSecond") or ON_DEMAND_WARM_DEFAULT["write"])
    basis = "on-demand warm throughput" if warm else "on-demand initial throughput"
    limits = desc.get("OnDemandThroughput") or {}
    if int(limits.get("MaxReadRequestUnits") or -1) > 0:
        read = min(read, int(limits["MaxReadRequestUnits"]))
    if int(limits.get("MaxWriteRequestUnits") or -1) > 0:
        write = min(write, int(limits["MaxWriteRequestUnits"]))
    return {"read": read, "write": write, "basis": basis}


def default_segments(desc: Json) -> int:
    """About one parallel-scan segment per 2 GB of table, from 1 to 64."""
    size = int(desc.get("TableSizeBytes") or 0)
    return max(1, min(64, math.ceil(size / (2 * 1024**3))))


# ---- rate ----------------------------------------------------------------------------------------------------
class RateLimiter:
    """A token bucket in capacity units per second (one second of burst); None means no limit."""

    def __init__(self, per_second: float | None, now: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.rate = per_second if per_second and per_second > 0 else None
        self.now = now
        self.sleep = sleep
        self.available = self.rate or 0.0
        self.last = now()
        self.waited = 0.0

    def spend(self, units: float) -> None:
        """Take `units`, sleeping as long as the debt takes to repay."""
        if self.rate is None or units <= 0:
            return
        now = self.now()
        self.available = min(self.rate, self.available + (now - self.last) * self.rate) - units
        self.last = now
        if self.available < 0:
            pause = -self.available / self.rate
            self.waited += pause
            self.sleep(pause)


# ---- units ---------------------------------------------------------------------------------------------------
def read_units(sizes: list[int], consistent: bool) -> float:
    """Read units of a Scan page of items of these sizes: 4 KB each, half for eventually consistent reads."""
    units = math.ceil(sum(sizes) / 4096)
    return units if consistent else units / 2


def item_read_units(sizes: list[int], consistent: bool) -> float:
    """Read units of getting items one by one or in a BatchGetItem: each item rounded up to 4 KB on its own."""
    units = sum(math.ceil(max(1, size) / 4096) for size in sizes)
    return units if consistent else units / 2


def write_units(sizes: list[int], transactional: bool) -> int:
    """Write units of putting items of these sizes: 1 KB each, twice for transactions."""
    units = sum(math.ceil(max(1, size) / 1024) for size in sizes)
    return units * 2 if transactional else units


def consumed_units(response: Json, table: str) -> float | None:
    """The read or write units a response says it consumed on `table` (ReturnConsumedCapacity=TOTAL), if any."""
    consumed = response.get("ConsumedCapacity")
    entries = consumed if isinstance(consumed, list) else [consumed] if consumed else []
    units = [float(e.get("CapacityUnits") or 0) for e in entries if isinstance(e, dict) and e.get("TableName") == table]
    return sum(units) if units else None
