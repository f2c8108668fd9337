r"""Workarounds for moto 5.2.5 ImportTable bugs met by the full-load tests (process-global, installed once).

1. moto parses the export file with py_partiql_parser's JsonParser, which keeps JSON escapes as they are:
   every non-ASCII string (exported as `\u00e9`) is imported as the literal text `\u00e9`, and an
   empty export fails with "object of type 'Variable' has no len()". The fix parses the file's JSON lines
   with `json.loads`, as DynamoDB does.
2. moto's import then puts each item as parsed, so a binary attribute stays base64 *text*, while PutItem
   stores a top-level `B`/`BS` as bytes. A table that mixes both (an imported binary-keyed table that
   live replication then writes to) breaks moto's Scan with "'<' not supported between bytes and str".
   The fix decodes top-level `B`/`BS` values, exactly what moto's PutItem does (nested ones stay text).

Both apply only inside moto's import thread.

3. A condition that orders values of different types (`#ts < :n` where the item holds an `S`) makes moto
   answer HTTP 500 ("'<' not supported between str and Decimal"). DynamoDB evaluates it to false: "if
   an item contains an AttributeValue element of a different type than the one provided in the
   request, the value does not match". The fix makes moto's four ordering operators false there.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

_state = threading.local()
_installed = False
_lock = threading.Lock()


def _as_put_would_store(item: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in item.items():
        if "B" in value and isinstance(value["B"], str):
            value = {"B": base64.b64decode(value["B"])}
        elif "BS" in value:
            value = {"BS": [base64.b64decode(v) if isinstance(v, str) else v for v in value["BS"]]}
        out[name] = value
    return out


def install() -> None:
    """Patch moto's import (once per process)."""
    global _installed
    with _lock:
        if _installed:
            return
        from moto.dynamodb.models.table import Table
        from moto.dynamodb.models.table_import import TableImport
        from py_partiql_parser import JsonParser

        process = TableImport._process_s3_files
        put_item = Table.put_item
        parse = JsonParser.parse

        def parse_json_lines(original: str, *args: Any, **kwargs: Any) -> Any:
            if getattr(_state, "importing", False):
                return [json.loads(line) for line in original.splitlines() if line.strip()]
            return parse(original, *args, **kwargs)

        def importing(self: Any, *args: Any, **kwargs: Any) -> Any:
            _state.importing = True
            try:
                return process(self, *args, **kwargs)
            finally:
                _state.importing = False

        def put(self: Any, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            if getattr(_state, "importing", False):
                item_attrs = _as_put_would_store(item_attrs)
            return put_item(self, item_attrs, *args, **kwargs)

        _comparisons_across_types_are_false()
        JsonParser.parse = staticmethod(parse_json_lines)  # type: ignore[method-assign]
        TableImport._process_s3_files = importing  # type: ignore[method-assign]
        Table.put_item = put  # type: ignore[method-assign]
        _installed = True


def _comparisons_across_types_are_false() -> None:
    from moto.dynamodb import comparisons

    for name in ("OpLessThan", "OpGreaterThan", "OpLessThanOrEqual", "OpGreaterThanOrEqual"):
        op = getattr(comparisons, name)
        original = op.expr

        def expr(self: Any, item: Any, _original: Any = original) -> bool:
            try:
                return bool(_original(self, item))
            except TypeError:  # values of different types: DynamoDB says the condition does not hold
                return False

        op.expr = expr
