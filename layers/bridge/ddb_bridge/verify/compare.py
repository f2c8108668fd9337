"""Reading items by key in batches, and comparing one page of items with the other table.

Reads are BatchGetItem, 100 keys a request, several requests at once; `UnprocessedKeys` are asked for
again with exponential backoff and full jitter. Items are compared in canonical form
(`core.canonical`): attribute order, number spelling and set order never make two items differ,
binary compares byte for byte, and the ignored attributes are left out.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..core.canonical import digest, same_item
from ..core.capacity import RateLimiter, consumed_units, item_read_units, read_units
from ..core.codec import Image, encode_image, item_size
from ..core.errors import RetryableError
from ..core.keys import key_id
from .clients import Json

BATCH_GET_MAX = 100
READ_ATTEMPTS = 8


def key_names(state: Json, client: Any, table: str) -> tuple[str, ...]:
    """The table's key attribute names: from the plan (`keys`), else from DescribeTable."""
    if state.get("keys"):
        return tuple(str(k) for k in state["keys"])
    return tuple(k["AttributeName"] for k in client.describe_table(TableName=table)["Table"]["KeySchema"])


def ref(key: Image) -> str:
    """A key's identity (client form in, canonical JSON out)."""
    return key_id(encode_image(key))


def projection(key_names: tuple[str, ...]) -> Json:
    """Request arguments that return the key attributes only (names escaped: keys can be reserved words)."""
    names = {f"#k{i}": name for i, name in enumerate(key_names)}
    return {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}


@dataclass
class ReadStats:
    """What a call's reads cost: requests, read units, items."""

    requests: int = 0
    units: float = 0.0
    items: int = 0

    def add(self, other: ReadStats) -> None:
        """Add another call's figures."""
        self.requests += other.requests
        self.units += other.units
        self.items += other.items


@dataclass
class KeyReader:
    """Reads items of one table by key: BatchGetItem, 100 keys a request, `pool` requests at once."""

    client: Any
    table: str
    key_names: tuple[str, ...]
    consistent: bool
    limiter: RateLimiter
    pool: ThreadPoolExecutor
    sleep: Callable[[float], None]
    keys_only: bool = False
    stats: ReadStats = field(default_factory=ReadStats)

    def read(self, keys: list[Image]) -> dict[str, Image]:
        """The items found, by `ref` of their key (absent keys are absent)."""
        unique = list({ref(k): k for k in keys}.values())
        chunks = [unique[i : i + BATCH_GET_MAX] for i in range(0, len(unique), BATCH_GET_MAX)]
        found: dict[str, Image] = {}
        for items, stats in self.pool.map(self._chunk, chunks):
            self.limiter.spend(stats.units)  # on this thread: the limiter is not shared across threads
            self.stats.add(stats)
            for item in items:
                found[ref({n: item[n] for n in self.key_names})] = item
        return found

    def _chunk(self, keys: list[Image]) -> tuple[list[Image], ReadStats]:
        request: Json = {"Keys": keys, "ConsistentRead": self.consistent}
        if self.keys_only:
            request.update(projection(self.key_names))
        pending: Json = {self.table: request}
        items: list[Image] = []
        stats = ReadStats()
        for attempt in range(READ_ATTEMPTS):
            response = self.client.batch_get_item(RequestItems=pending, ReturnConsumedCapacity="TOTAL")
            got = response.get("Responses", {}).get(self.table, [])
            items.extend(got)
            stats.requests += 1
            stats.items += len(got)
            reported = consumed_units(response, self.table)
            if reported is None:
                reported = item_read_units([item_size(i) for i in got], self.consistent)
            stats.units += reported
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                return items, stats
            self.sleep(random.uniform(0, min(5.0, 0.05 * 2**attempt)))  # full jitter
        left = len(pending.get(self.table, {}).get("Keys", []))
        raise RetryableError(
            "UnprocessedKeys", f"{left} keys of {self.table} still unprocessed after {READ_ATTEMPTS} tries"
        )


def scan_units(page: Json, table: str, consistent: bool) -> float:
    """Read units a Scan page consumed: what DynamoDB reports, else estimated from the item sizes."""
    reported = consumed_units(page, table)
    return reported if reported is not None else read_units([item_size(i) for i in page.get("Items", [])], consistent)


def source_candidates(
    items: list[Image], target: dict[str, Image], key_names: tuple[str, ...], ignore: Collection[str], seen_ms: int
) -> list[Json]:
    """Source items the target lacks or holds differently: the candidates of one source page."""
    out: list[Json] = []
    for item in items:
        key = {n: item[n] for n in key_names}
        other = target.get(ref(key))
        if other is None:
            out.append(candidate(key, "missing", item, None, seen_ms))
        elif not same_item(item, other, ignore):
            out.append(candidate(key, "different", item, other, seen_ms))
    return out


def candidate(key: Image, kind: str, source: Image | None, target: Image | None, seen_ms: int) -> Json:
    """One difference seen once, to be rechecked: the key, and the digest of each side (None: absent)."""
    return {
        "key": encode_image(key),
        "kind": kind,
        "source": digest(source) if source is not None else None,
        "target": digest(target) if target is not None else None,
        "seenAt": seen_ms,
    }
