"""statemachine/verify.asl.json executed by moto's Step Functions engine, against moto over HTTP.

Verify finds every injected difference (missing, extra, a changed attribute, one changed binary byte, a
nested map change) and no false one (numbers spelled differently, sets in another order, attributes in
another order, an ignored attribute); live writes during the verify end as no real difference; repair
converges and never overwrites a newer write; cross-account and cross-partition; resume; bad input.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ddb_bridge.core.codec import encode_image
from ddb_bridge.core.keys import key_id
from ddb_bridge.verify.progress import read_progress
from harness import lambda_bridge
from harness.lambda_bridge import LambdaBridge
from harness.load_world import LoadWorld, TableShape, load_world
from harness.verify import create_verify_resources, progress_table, read_report, verify_machine
from harness.workflows import run

SCHEMA = [("pk", "S"), ("sk", "N")]


@pytest.fixture
def bridge(aws: Any) -> Iterator[LambdaBridge]:
    bridge = lambda_bridge.install()
    yield bridge
    bridge.hooks.clear()


def key(i: int) -> dict[str, Any]:
    return {"pk": {"S": f"user#{i % 7}"}, "sk": {"N": str(i)}}


def item(i: int, *, version: int | None = None, note: str = "seed") -> dict[str, Any]:
    out = {
        **key(i),
        "note": {"S": note},
        "price": {"N": "1.50"},
        "blob": {"B": bytes([i % 256]) * 8},
        "tags": {"SS": ["a", "b", f"t{i}"]},
        "nums": {"NS": ["2.50", "1", str(i)]},
        "nested": {"M": {"deep": {"M": {"b": {"B": b"\x00\xff"}, "n": {"N": "9" * 38}}}, "l": {"L": [{"S": "x"}]}}},
    }
    if version is not None:
        out["last_update_timestamp"] = {"N": str(version)}
        out["last_updater_region"] = {"S": "us-east-1"}
    return out


def respelled(source: dict[str, Any]) -> dict[str, Any]:
    """The same item as DynamoDB sees it, written differently: numbers, set order, attribute order."""
    out = dict(reversed(list(source.items())))
    out["price"] = {"N": "1.5"}
    out["tags"] = {"SS": list(reversed(source["tags"]["SS"]))}
    out["nums"] = {"NS": ["2.5", *reversed(source["nums"]["NS"][1:])]}
    return out


def kid(k: dict[str, Any]) -> str:
    return key_id(encode_image(k))


def put_all(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for i in range(0, len(items), 25):
        client.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": it}} for it in items[i : i + 25]]})


def verify_world(*, cross_partition: bool = False, stream: bool = False) -> LoadWorld:
    shape = TableShape(key_schema=SCHEMA, stream_view="NEW_AND_OLD_IMAGES" if stream else None, pitr=False)
    world = load_world(shape, cross_partition=cross_partition)
    world.create_target_table()
    create_verify_resources(world)
    return world


def by_class(lines: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for line in lines:
        out.setdefault(line["class"], set()).add(kid(line["key"]))
    return out


# ---- what verify finds -------------------------------------------------------------------------------------
def inject_differences(world: LoadWorld, n: int) -> dict[str, set[str]]:
    """Source = n items; target = the same items spelled differently, with known differences; returns them."""
    source = [item(i) for i in range(n)]
    put_all(world.source, world.source_table, source)
    target = {kid(key(i)): respelled(it) for i, it in enumerate(source)}
    missing = {kid(key(i)) for i in (3, 17, 29)}
    for k in missing:
        del target[k]
    extra_items = [item(1000 + i) for i in range(2)]
    target.update({kid(key(1000 + i)): it for i, it in enumerate(extra_items)})
    changed = {kid(key(i)) for i in (5, 6, 7, 8)}
    target[kid(key(5))]["note"] = {"S": "changed"}
    target[kid(key(6))]["blob"] = {"B": bytes([6]) * 7 + bytes([7])}  # one byte of eight
    target[kid(key(7))]["nested"] = {
        "M": {"deep": {"M": {"b": {"B": b"\x00\xff"}, "n": {"N": "9" * 37 + "8"}}}, "l": {"L": [{"S": "x"}]}}
    }
    target[kid(key(8))]["tags"] = {"SS": ["a", "b"]}
    target[kid(key(9))]["audit"] = {"S": "only on the target, and ignored"}
    put_all(world.target, world.target_table, list(target.values()))
    return {"missing": missing, "extra": {kid(key(1000 + i)) for i in range(2)}, "different": changed}


def test_verify_finds_every_injected_difference_and_no_false_ones(bridge: LambdaBridge) -> None:
    # GIVEN a target that holds the source's items spelled differently (1.50 vs 1.5, sets and attributes in
    # another order), with 3 missing, 2 extra and 4 changed items (an attribute, one binary byte, a nested
    # number in a map, a set), and one item differing only in an ignored attribute
    world = verify_world()
    expected = inject_differences(world, 60)
    raw = world.target.get_item(TableName=world.target_table, Key=key(0))["Item"]
    source_raw = world.source.get_item(TableName=world.source_table, Key=key(0))["Item"]
    assert raw["price"] == {"N": "1.5"} and source_raw["price"] == {"N": "1.50"} and raw != source_raw
    machine = verify_machine(world)

    # WHEN verify runs
    result = run(
        machine,
        {"segments": 3, "pageSize": 10, "recheckDelaySeconds": 0, "ignoreAttributes": ["audit"], "sampleSize": 2},
        timeout_s=120,
    )

    # THEN it finds exactly the injected differences, and no other
    assert result["status"] == "SUCCEEDED", result.get("cause")
    out = result["output"]
    assert (out["missing"], out["extra"], out["different"], out["inFlight"]) == (3, 2, 4, 0)
    assert out["compared"] == 62 and out["equal"] == 62 - 9 and out["clean"] is False
    lines = read_report(world, out["report"])
    assert by_class(lines) == expected
    assert len(lines) == 9
    assert {kid(k) for k in out["samples"]["missing"]} <= expected["missing"] and len(out["samples"]["missing"]) == 2
    assert all(line["source"] is None for line in lines if line["class"] == "extra")
    assert all(line["target"] is None for line in lines if line["class"] == "missing")
    progress = read_progress(world.source, progress_table(world), result["output"]["verifyId"])
    assert progress.phase == "done" and progress.segments_done == progress.segments_total == 3
    assert (progress.compared, progress.missing, progress.extra, progress.different) == (62, 3, 2, 4)
