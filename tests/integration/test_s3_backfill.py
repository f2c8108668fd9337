"""statemachine/bucket_backfill.asl.json in moto's Step Functions, and the bucket compare, over HTTP."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from ddb_bridge.s3.compare import compare_buckets, main
from ddb_bridge.s3.settings import BucketPair
from harness import lambda_bridge
from harness.faults import S3Fault, inject
from harness.lambda_bridge import LambdaBridge
from harness.s3_world import BucketWorld, bucket_world
from harness.workflows import run


@pytest.fixture
def bridge(aws: Any) -> Iterator[LambdaBridge]:
    bridge = lambda_bridge.install()
    yield bridge
    bridge.hooks.clear()


def seed(world: BucketWorld, n: int) -> dict[str, bytes]:
    objects = {}
    for i in range(n):
        key = f"{'abcxyz'[i % 6]}/{i:04d} file+{i}.txt"
        body = f"object {i} ".encode() * (1 + i % 7)
        world.put(key, body, Metadata={"n": str(i)})
        objects[key] = body
    return objects


def count_calls(bridge: LambdaBridge, operation: str) -> list[str]:
    seen: list[str] = []

    def setup(sandbox: Any) -> None:
        target = sandbox.layer_module("ddb_bridge.s3.backfill").runtime().copier().target
        target.meta.events.register(f"before-send.s3.{operation}", lambda request, **_: seen.append(request.url))

    bridge.configure("bucket_backfill", setup)
    return seen


def test_backfill_copies_only_what_is_missing_or_different(bridge: LambdaBridge) -> None:
    # GIVEN 36 objects; the target already holds 10 identical ones, 5 of the same size with other bytes, 1 extra
    world = bucket_world(notify=False)  # the other partition: test_large_object_is_split_across_calls_and_resumed
    objects = seed(world, 36)
    keys = sorted(objects)
    for key in keys[:10]:
        world.target.put_object(Bucket=world.target_bucket, Key=key, Body=objects[key])
    for key in keys[10:15]:
        world.target.put_object(Bucket=world.target_bucket, Key=key, Body=bytes(len(objects[key])))
    world.target.put_object(Bucket=world.target_bucket, Key="zz/extra.txt", Body=b"not in the source")
    machine = world.backfill_machine()
    # WHEN the backfill runs in 4 key ranges
    result = run(machine, {"ranges": 4, "pageSize": 10}, timeout_s=90)
    # THEN it copied 26, skipped the 10 identical, left the extra alone (deleteExtra is off) and says so
    assert result["status"] == "SUCCEEDED", result.get("cause")
    out = result["output"]
    assert (out["copied"], out["skipped"], out["failed"], out["deleted"]) == (26, 10, 0, 0)
    assert out["bytesCopied"] == sum(len(objects[k]) for k in keys[10:])
    assert out["ranges"] >= 2
    assert world.target_contents() == {**objects, "zz/extra.txt": b"not in the source"}
    meta = world.target.head_object(Bucket=world.target_bucket, Key=keys[20])["Metadata"]
    assert meta["n"] == world.s3.head_object(Bucket=world.source_bucket, Key=keys[20])["Metadata"]["n"]


def test_a_restarted_backfill_does_not_copy_again_what_is_done(bridge: LambdaBridge) -> None:
    world = bucket_world(notify=False)
    objects = seed(world, 45)
    machine = world.backfill_machine()
    copies = count_calls(bridge, "CopyObject")

    def crash_one_range(event: dict[str, Any]) -> None:
        if event.get("action") == "copy" and event["range"]["range"] == 2:
            raise RuntimeError("simulated crash of the calls of one range")

    bridge.hooks["bucket_backfill"] = crash_one_range
    first = run(machine, {"backfillId": "resume-me", "ranges": 3, "pageSize": 5}, timeout_s=60)
    bridge.wait_idle()
    assert first["status"] == "FAILED"
    copied_first = len(world.target_contents())
    assert 0 < copied_first < 45 and len(copies) == copied_first
    bridge.hooks.clear()
    second = run(machine, {"backfillId": "resume-me", "ranges": 3, "pageSize": 5}, timeout_s=90)
    assert second["status"] == "SUCCEEDED", second.get("cause")
    assert world.target_contents() == objects
    assert len(copies) == 45  # each object copied exactly once over both runs


def test_large_object_is_split_across_calls_and_resumed(bridge: LambdaBridge) -> None:
    world = bucket_world(notify=False, cross_partition=True)
    body = os.urandom(16 * 1024 * 1024)
    world.put("big/one.bin", body, ContentType="application/octet-stream", Metadata={"big": "yes"})
    world.put("small.txt", b"s")
    machine = world.backfill_machine(INLINE_MAX_MB="5", PART_SIZE_MB="5", COPY_CONCURRENCY="1")
    parts = count_calls(bridge, "UploadPart")
    # callSeconds=1: a call copies one part, checkpoints the upload, and the next call resumes it
    result = run(machine, {"ranges": 1, "callSeconds": 1}, timeout_s=90)
    assert result["status"] == "SUCCEEDED", result.get("cause")
    got = world.target.get_object(Bucket=world.target_bucket, Key="big/one.bin")
    assert got["Body"].read() == body and got["Metadata"]["big"] == "yes"
    assert len(parts) == 4 and result["output"]["copied"] == 2
    assert not world.target.list_multipart_uploads(Bucket=world.target_bucket).get("Uploads")


def test_delete_extra_dry_run_then_capped(bridge: LambdaBridge) -> None:
    world = bucket_world(notify=False)
    seed(world, 6)
    for i in range(5):
        world.target.put_object(Bucket=world.target_bucket, Key=f"zz/old-{i}", Body=b"stale")
    machine = world.backfill_machine()
    dry = run(machine, {"backfillId": "dry", "ranges": 2, "deleteExtra": True}, timeout_s=60)
    assert dry["status"] == "SUCCEEDED" and (dry["output"]["wouldDelete"], dry["output"]["deleted"]) == (5, 0)
    capped = run(machine, {"backfillId": "real", "ranges": 1, "deleteExtra": True, "dryRun": False, "deleteCap": 3})
    assert capped["status"] == "SUCCEEDED", capped.get("cause")
    left = [k for k in world.target_contents() if k.startswith("zz/")]
    # the cap takes whole pages' deletes: the page's 5 exceed the cap of 3, so none are deleted and all are counted
    assert capped["output"]["deleted"] + len(left) == 5 and capped["output"]["deleted"] <= 3


def test_invalid_input_fails_readably(bridge: LambdaBridge) -> None:
    world = bucket_world(notify=False)
    machine = world.backfill_machine()
    result = run(machine, {"ranges": 0})
    assert result["status"] == "FAILED" and "ranges must be" in result.get("cause", "")


def test_compare_reports_missing_extra_and_different(aws: Any, capsys: Any) -> None:
    world = bucket_world(notify=False)
    objects = seed(world, 18)
    for key, body in objects.items():
        world.target.put_object(Bucket=world.target_bucket, Key=key, Body=body)
    pair = BucketPair(world.source_bucket, world.target_bucket)
    assert compare_buckets(world.s3, world.target, pair, ranges=4).ok
    keys = sorted(objects)
    world.target.delete_object(Bucket=world.target_bucket, Key=keys[3])
    world.target.put_object(Bucket=world.target_bucket, Key=keys[7], Body=bytes(len(objects[keys[7]])))
    world.target.put_object(Bucket=world.target_bucket, Key="c/extra", Body=b"?")
    report = compare_buckets(world.s3, world.target, pair, ranges=4)
    assert (report.missing, report.extra, report.different, report.objects) == (1, 1, 1, 18)
    assert report.samples == {"missing": [keys[3]], "extra": ["c/extra"], "different": [keys[7]]}
    code = main(
        ["--source-bucket", world.source_bucket, "--target-bucket", world.target_bucket, "--ranges", "3", "--json"]
    )
    assert code == 1 and '"missing": 1' in capsys.readouterr().out


def test_an_object_the_backfill_may_not_read_is_counted_failed_and_the_rest_copied(bridge: LambdaBridge) -> None:
    world = bucket_world(notify=False)
    objects = seed(world, 12)
    denied = sorted(objects)[5]

    def deny(sandbox: Any) -> None:
        target = sandbox.layer_module("ddb_bridge.s3.backfill").runtime().copier().target
        inject(target, "CopyObject", S3Fault("AccessDenied", times=10**6, status=403, when=ends_with(denied)))

    machine = world.backfill_machine()
    bridge.configure("bucket_backfill", deny)
    result = run(machine, {"ranges": 2}, timeout_s=60)
    assert result["status"] == "SUCCEEDED", result.get("cause")
    out = result["output"]
    assert (out["copied"], out["failed"], out["bytesFailed"]) == (11, 1, len(objects[denied]))
    assert [(f["key"], f["reason"]) for f in out["failures"]] == [(denied, "AccessDenied")]
    assert world.target_contents() == {k: v for k, v in objects.items() if k != denied}


def ends_with(key: str) -> Any:
    quoted = quote(key)
    return lambda request: request.url.split("?")[0].endswith("/" + quoted)
