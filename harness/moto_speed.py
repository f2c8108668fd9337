"""Fast paths for two of moto's per-item costs DynamoDB does not have: same bytes out, same items stored.

moto 5.2.5 serialises every response through its generic, model-driven serializer. For an
AttributeValue it asks its attribute picker for each of the ten members (S, N, B, SS, NS, BS, M, L,
NULL, BOOL), each under two spellings, for every attribute of every item. Over HTTP a Scan costs
~0.25 ms per item with it and ~0.09 ms with the fast path; DynamoDB's cost per item read is
microseconds. That cost falls on anything that reads many items (the tests' table comparisons, the
demo, the benchmarks) and distorts the backfill benchmark in particular: both the backfill and its
baseline scan every item once, but only the baseline pays a whole request per item on the write side.

The fast path writes the member that is there, with the same per-type conversions as the stock
serializer (blob: base64; string members: `str`; lists, maps and nested values recursively), and
hands anything it does not recognise back to the stock code. `tests/unit/test_moto_speed.py` checks
that both produce the same JSON for generated items of every type, including through a real server.
Set `MOTO_STOCK_SERIALIZER=1` to run without it.

Second, moto builds every item it stores (PutItem, BatchWriteItem, a transaction's Put) one attribute at
a time into a dict that recomputes the size of the whole item at each attribute, to refuse an item over
its 400 KB limit: quadratic in the number of attributes (~0.7 ms of a 13-attribute item's ~1 ms). The
fast path sizes the item once, after its last attribute, and refuses it with the same error: sizes only
grow as attributes are added, so the whole item is over the limit iff some prefix of it was. Later
changes to a stored item (UpdateItem) keep moto's own check. `tests/unit/test_moto_speed.py` checks the
stored items and the refusals against the stock code. `MOTO_STOCK_SERIALIZER=1` turns this off too.

Third, the same model walk on the way in: moto parses every request body through its generic parser,
which for an AttributeValue visits the ten members of the shape for every attribute (~0.3 ms of an item
written in a BatchWriteItem). The fast path converts the one member that is there as the stock parser
does (blob: base64-decoded bytes; sets and lists: new lists; maps: new dicts; strings, numbers and flags
as they are) and hands anything else back (the tests compare both parsers' output).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_installed = False
_lock = threading.Lock()
_fast = True
_SCALARS = frozenset({"S", "N"})
_SETS = frozenset({"SS", "NS"})
_FLAGS = frozenset({"NULL", "BOOL"})


class _Unknown(Exception):
    """A value the fast path does not handle: the stock serializer takes it."""


def _string(value: Any) -> Any:
    """What moto's JSON serializer does to a string member."""
    return str(value) if value not in [None, {}, []] else value


def wire(value: Any, b64: Any) -> dict[str, Any]:
    """The JSON form of one AttributeValue as moto holds it in a response ({type: value}), or _Unknown."""
    if type(value) is not dict or len(value) != 1:
        raise _Unknown
    ((kind, inner),) = value.items()
    if inner is None:
        raise _Unknown
    if kind in _SCALARS:
        return {kind: _string(inner)}
    if kind == "B":
        return {"B": b64(inner)}
    if kind == "M":
        if type(inner) is not dict:
            raise _Unknown
        return {"M": {str(k): wire(v, b64) for k, v in inner.items()}}
    if kind == "L":
        if type(inner) is not list:
            raise _Unknown
        return {"L": [wire(v, b64) for v in inner]}
    if kind in _SETS:
        if type(inner) is not list:
            raise _Unknown
        return {kind: [_string(v) for v in inner]}
    if kind == "BS":
        if type(inner) is not list:
            raise _Unknown
        return {"BS": [b64(v) for v in inner]}
    if kind in _FLAGS:
        return {kind: inner}
    raise _Unknown


def install() -> None:
    """Patch moto's JSON serializer (once per process) unless MOTO_STOCK_SERIALIZER is set."""
    global _installed
    if os.environ.get("MOTO_STOCK_SERIALIZER", "").lower() in ("1", "true", "yes"):
        return
    with _lock:
        if _installed:
            return
        from moto.core.serialize import BaseJSONSerializer

        stock = BaseJSONSerializer._serialize_type_structure

        def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
            if _fast and key and shape.name == "AttributeValue" and not shape.serialization.get("name"):
                try:
                    serialized[key] = wire(value, self._base64)
                    return
                except _Unknown:
                    pass
            stock(self, serialized, value, shape, key)

        BaseJSONSerializer._serialize_type_structure = serialize_structure  # type: ignore[method-assign]
        _install_item_sizing()
        _install_request_parsing()
        _installed = True


def parsed(value: Any, blob: Any) -> Any:
    """One AttributeValue of a request as moto's JSON parser gives it (blob: its blob parser), or _Unknown."""
    if type(value) is not dict or len(value) != 1:
        raise _Unknown
    ((kind, inner),) = value.items()
    if inner is None:
        raise _Unknown
    if kind in _SCALARS or kind in _FLAGS:
        return {kind: inner}
    if kind == "B":
        return {"B": blob(inner)}
    if kind == "M":
        if type(inner) is not dict:
            raise _Unknown
        return {"M": {k: parsed(v, blob) for k, v in inner.items()}}
    if kind == "L":
        if type(inner) is not list:
            raise _Unknown
        return {"L": [parsed(v, blob) for v in inner]}
    if kind in _SETS:
        if type(inner) is not list:
            raise _Unknown
        return {kind: list(inner)}
    if kind == "BS":
        if type(inner) is not list:
            raise _Unknown
        return {"BS": [blob(v) for v in inner]}
    raise _Unknown


def _install_request_parsing() -> None:
    """Parse a request's AttributeValues without visiting every member of the shape (module docstring)."""
    from moto.core.parse import BaseJSONParser

    stock = BaseJSONParser._parse_structure

    def parse_structure(self: Any, shape: Any, value: Any) -> Any:
        if _fast and shape.name == "AttributeValue" and self.MAP_TYPE is dict:
            try:
                return parsed(value, self._blob_parser)
            except _Unknown:
                pass
        return stock(self, shape, value)

    BaseJSONParser._parse_structure = parse_structure  # type: ignore[method-assign]


def _install_item_sizing() -> None:
    """Build a stored item's attributes with one size check instead of one per attribute (module docstring)."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    stock_init = Item.__init__
    limit = 405000  # moto's own figure (LimitedSizeDict.__setitem__)

    def init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        if not _fast:
            stock_init(self, hash_key, range_key, attrs)
            return
        self.hash_key = hash_key
        self.range_key = range_key
        values = {key: DynamoType(value) for key, value in attrs.items()}
        if sum(bytesize(key) + value.size() for key, value in values.items()) > limit:
            raise ItemSizeTooLarge
        self.attrs = LimitedSizeDict()
        dict.update(self.attrs, values)

    Item.__init__ = init  # type: ignore[method-assign]


@contextmanager
def stock() -> Iterator[None]:
    """Serialize with moto's own code inside the block (tests compare the two)."""
    global _fast
    _fast = False
    try:
        yield
    finally:
        _fast = True
