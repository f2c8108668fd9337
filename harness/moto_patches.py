"""Fixes to moto 5.2.5's DynamoDB TransactWriteItems, applied in-process, so it behaves like DynamoDB.

moto makes a transaction undoable by deep-copying every table it names (all items and all stream
records) before each transaction, and on a cancellation puts the copies in place of the tables.
1. The copy has a new stream shard object, while every open shard iterator (and each
   NextShardIterator handed out since) points at the old one: a reader that keeps its iterator, as
   Lambda does, never sees another record of that table after one cancelled transaction.
2. Nothing is isolated: moto serves requests on threads, so a write landing between a transaction's
   copy and its rollback is erased, and a reader (GetItem, a stream's GetRecords) can see a cancelled
   transaction's writes before they are undone; a stream reader then skips the next real record,
   which reuses the phantom's sequence number.
3. The copy costs O(table) per transaction: 20 ms at a few hundred stream records, 100 ms at a
   thousand, so a benchmark would measure moto's copying rather than the code under test.
The fix: tables are never replaced. Before a transaction, only the items it names are saved (and
the length of each stream); a cancelled transaction puts those items back and drops the stream
records it added, in place. DynamoDB's writes and reads (tables and streams) are serialised with one
lock, so each write is atomic and reads see only committed data, as in DynamoDB. Idempotent; nothing
else in moto changes.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable
from typing import Any

import moto.dynamodb.models as ddb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.dynamodbstreams.models import DynamoDBStreamsBackend

_TABLE_CALLS = ("put_item", "update_item", "delete_item", "transact_write_items", "get_item", "query", "scan")
_STREAM_CALLS = ("describe_stream", "get_shard_iterator", "get_records")
_LOCK = threading.RLock()
_MARK = "_ddb_bridge_patched"


class _TablesStayInPlace:
    """Stands in for `copy` inside moto's DynamoDB models: a Table "copy" is the table itself."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        """The real deepcopy, except for whole tables (undone item by item instead)."""
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _key_of(table: Table, op_type: str, op: dict[str, Any]) -> tuple[DynamoType, DynamoType | None] | None:
    source = op.get("Item") if op_type == "Put" else op.get("Key")
    if not isinstance(source, dict) or table.hash_key_attr not in source:
        return None
    range_value = None
    if table.range_key_attr is not None:
        if table.range_key_attr not in source:
            return None
        range_value = DynamoType(source[table.range_key_attr])
    return DynamoType(source[table.hash_key_attr]), range_value


def _undoable(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(self: DynamoDBBackend, transact_items: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        saved: list[tuple[Table, DynamoType, DynamoType | None, Any]] = []
        streams: dict[int, tuple[Table, int]] = {}
        for entry in transact_items:
            if not isinstance(entry, dict) or len(entry) != 1:
                continue
            ((op_type, op),) = entry.items()
            table = self.tables.get(op.get("TableName")) if isinstance(op, dict) else None
            key = _key_of(table, op_type, op) if table is not None else None
            if table is None or key is None:
                continue
            try:
                current = table.get_item(*key)
            except Exception:  # noqa: BLE001 - a bad key: moto itself will refuse the transaction
                continue
            saved.append((table, key[0], key[1], copy.deepcopy(current)))
            if table.stream_shard is not None:
                streams.setdefault(id(table), (table, len(table.stream_shard.items)))
        try:
            return method(self, transact_items, *args, **kwargs)
        except Exception:
            for table, hash_value, range_value, item in reversed(saved):
                if item is None:
                    if range_value is None:
                        table.items.pop(hash_value, None)
                    else:
                        table.items.get(hash_value, {}).pop(range_value, None)
                elif range_value is None:
                    table.items[hash_value] = item
                else:
                    table.items[hash_value][range_value] = item
            for table, length in streams.values():
                del table.stream_shard.items[length:]
            raise

    return run


def _serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return method(self, *args, **kwargs)

    setattr(run, _MARK, True)
    return run


def apply() -> None:
    """Patch moto's DynamoDB backend (once per process)."""
    if getattr(DynamoDBBackend.transact_write_items, _MARK, False):
        return
    ddb_models.copy = _TablesStayInPlace()  # type: ignore[assignment]
    DynamoDBBackend.transact_write_items = _undoable(DynamoDBBackend.transact_write_items)  # type: ignore[method-assign]
    for name in _TABLE_CALLS:
        setattr(DynamoDBBackend, name, _serialised(getattr(DynamoDBBackend, name)))
    for name in _STREAM_CALLS:
        setattr(DynamoDBStreamsBackend, name, _serialised(getattr(DynamoDBStreamsBackend, name)))
