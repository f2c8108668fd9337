"""bucket_replicator against moto over HTTP: events through SQS as Lambda delivers them, both target kinds."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from ddb_bridge.s3.events import newer
from harness.s3_world import BucketWorld, bucket_world
from harness.sqs_source import scramble, take_all

KEYS = ["plain.txt", "a b/c d.txt", "x+y=z.txt", "100%/done.txt", "über/日本語 ✓.bin", "q?&#.txt"]


_FUNCTIONS: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}


def run(world: BucketWorld, **env: str) -> Any:
    """Deliver the queue to the world's replicator (one warm function per world and settings, as Lambda keeps)."""
    slot = (world.name, tuple(sorted(env.items())))
    if slot not in _FUNCTIONS:
        _FUNCTIONS.clear()
        _FUNCTIONS[slot] = world.replicator(**env)
    source = world.source_of(_FUNCTIONS[slot])
    source.drain(timeout_s=60)
    return source


def assert_same(world: BucketWorld) -> None:
    assert world.target_contents() == world.source_contents()


@pytest.mark.parametrize("cross_partition", [False, True], ids=["other-account", "other-partition"])
def test_awkward_keys_and_metadata_arrive_intact(aws: Any, cross_partition: bool) -> None:
    # GIVEN objects whose keys S3 URL-encodes in events, with headers, metadata and tags
    world = bucket_world(cross_partition=cross_partition)
    for i, key in enumerate(KEYS):
        world.put(
            key,
            f"body {i}".encode() * (i + 1),
            ContentType="text/plain",
            ContentEncoding="identity",
            ContentLanguage="de",
            ContentDisposition=f'attachment; filename="f{i}"',
            CacheControl="max-age=60",
            Metadata={"owner": f"team-{i}", "note": "ok =1"},
            Tagging=f"class=c{i}&keep=yes",
        )
    raw_keys = [json.loads(b)["Records"][0]["s3"]["object"]["key"] for b in _peek(world)]
    assert "a+b%2Fc+d.txt" in raw_keys and "x%2By%3Dz.txt" in raw_keys  # moto encodes as S3 does

    # WHEN the queue is delivered to the replicator
    run(world)

    # THEN every object arrived byte for byte, with everything it keeps
    assert_same(world)
    for key in KEYS:
        src = world.s3.head_object(Bucket=world.source_bucket, Key=key)
        dst = world.target.head_object(Bucket=world.target_bucket, Key=key)
        for header in ("ContentType", "ContentEncoding", "ContentLanguage", "ContentDisposition", "CacheControl"):
            assert dst.get(header) == src.get(header), header
        assert {k: v for k, v in dst["Metadata"].items() if k != "ddb-bridge-source-etag"} == src["Metadata"]
        tags = world.target.get_object_tagging(Bucket=world.target_bucket, Key=key)["TagSet"]
        assert sorted((t["Key"], t["Value"]) for t in tags) == [("class", f"c{KEYS.index(key)}"), ("keep", "yes")]
    assert world.parked() == []


def _peek(world: BucketWorld) -> list[str]:
    msgs = world.sqs.receive_message(QueueUrl=world.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return [m["Body"] for m in msgs.get("Messages", [])]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_duplicates_and_any_order_converge(aws: Any, seed: int) -> None:
    # GIVEN creates, overwrites, deletes and re-creates of a few keys, all through S3's notifications
    rng = random.Random(seed)
    world = bucket_world()
    keys = ["k1", "k 2", "k+3"]
    for step in range(24):
        key = rng.choice(keys)
        if rng.random() < 0.3:
            world.delete(key)
        else:
            world.put(key, f"{key}:{step}".encode())
    # WHEN the events arrive shuffled, many of them twice
    scramble(world.sqs, world.queue_url, rng, duplicates=0.6)
    source = run(world)
    # THEN the target equals the source (the oracle), whatever the order
    assert_same(world)
    assert source.invocations >= 1 and world.parked() == []


def test_a_delete_event_after_a_re_create_keeps_the_object(aws: Any) -> None:
    # GIVEN a key created, deleted and created again; only the delete's event is delivered late
    world = bucket_world()
    world.put("doc.txt", b"v1")
    run(world)
    world.delete("doc.txt")
    delete_event = _take_all(world)
    world.put("doc.txt", b"v2")
    run(world)  # the re-create is delivered first
    # WHEN the old delete event arrives last
    world.sqs.send_message(QueueUrl=world.queue_url, MessageBody=delete_event[0])
    source = run(world)
    # THEN the object is still there, with the new content
    assert world.target_contents() == {"doc.txt": b"v2"} and source.invocations == 1


def _take_all(world: BucketWorld) -> list[str]:
    return take_all(world.sqs, world.queue_url)


def test_an_older_event_is_dropped_by_its_sequencer(aws: Any) -> None:
    # GIVEN a key whose newer event was applied
    world = bucket_world()
    world.put("k", b"1")
    first = _take_all(world)
    world.put("k", b"2")
    second = _take_all(world)
    seqs = [json.loads(b)["Records"][0]["s3"]["object"]["sequencer"] for b in first + second]
    assert newer(seqs[1], seqs[0])  # S3's order (the harness stamps them as moto applies the writes)
    reports: list[Any] = []
    fn = world.replicator()
    fn.layer_module("ddb_bridge.s3.replicator").report_listeners.append(reports.append)
    world.sqs.send_message(QueueUrl=world.queue_url, MessageBody=second[0])
    world.source_of(fn).drain()
    # WHEN the older event arrives afterwards
    world.sqs.send_message(QueueUrl=world.queue_url, MessageBody=first[0])
    world.source_of(fn).drain()
    # THEN it is dropped as stale, and the target keeps the newer content
    assert reports[-1].stale == 1 and reports[-1].copied == 0
    assert world.target_contents() == {"k": b"2"}


def test_identical_objects_are_skipped_and_same_size_changes_are_copied(aws: Any) -> None:
    world = bucket_world()
    world.put("same.bin", b"A" * 1000)
    world.put("changed.bin", b"B" * 1000)
    run(world)
    take_all(world.sqs, world.queue_url)
    # GIVEN the target already holds one identical object and one of the same size but other bytes
    world.target.put_object(Bucket=world.target_bucket, Key="changed.bin", Body=b"C" * 1000)
    reports: list[Any] = []
    fn = world.replicator()
    fn.layer_module("ddb_bridge.s3.replicator").report_listeners.append(reports.append)
    # WHEN both keys get an event again (a re-put of the same bytes, and a duplicate)
    world.put("same.bin", b"A" * 1000)
    world.put("changed.bin", b"B" * 1000)
    world.source_of(fn).drain()
    # THEN the identical one was skipped, the same-size different one copied
    assert sum(r.skipped_identical for r in reports) == 1 and sum(r.copied for r in reports) == 1
    assert_same(world)


def test_versioned_source_delete_markers_become_deletes(aws: Any) -> None:
    # GIVEN a versioned source bucket
    world = bucket_world(versioned=True)
    world.put("v.txt", b"1")
    world.put("v.txt", b"2")
    world.put("gone.txt", b"x")
    run(world)
    # WHEN one key gets a delete marker, and the other loses its newest version
    world.delete("gone.txt")
    newest = world.s3.head_object(Bucket=world.source_bucket, Key="v.txt")["VersionId"]
    world.delete("v.txt", VersionId=newest)
    run(world)
    # THEN the target has no gone.txt and holds v.txt's now-current version
    assert world.target_contents() == {"v.txt": b"1"}


def test_test_event_and_eventbridge_shape(aws: Any) -> None:
    world = bucket_world(notify=False)
    world.put("eb key+1.txt", b"from eventbridge")
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": world.source_bucket}
    eb = json.loads(json.loads(Path("events/s3_sqs_eventbridge_and_malformed.json").read_text())["Records"][0]["body"])
    eb["detail"]["bucket"]["name"] = world.source_bucket
    world.sqs.send_message(QueueUrl=world.queue_url, MessageBody=json.dumps(test_event))
    world.sqs.send_message(QueueUrl=world.queue_url, MessageBody=json.dumps(eb))
    run(world)
    assert world.target_contents() == {"eb key+1.txt": b"from eventbridge"} and world.parked() == []


def test_multipart_object_byte_identical_server_side_and_streamed(aws: Any) -> None:
    # GIVEN a 20 MB object uploaded in 5 MB parts, with metadata
    for cross in (False, True):
        world = bucket_world(cross_partition=cross)
        body = os.urandom(20 * 1024 * 1024)
        up = world.s3.create_multipart_upload(
            Bucket=world.source_bucket, Key="big/blob.bin", ContentType="application/x-test", Metadata={"k": "v"}
        )
        parts = []
        for n in range(4):
            chunk = body[n * 5 * 1024 * 1024 : (n + 1) * 5 * 1024 * 1024]
            r = world.s3.upload_part(
                Bucket=world.source_bucket, Key="big/blob.bin", UploadId=up["UploadId"], PartNumber=n + 1, Body=chunk
            )
            parts.append({"ETag": r["ETag"], "PartNumber": n + 1})
        world.s3.complete_multipart_upload(
            Bucket=world.source_bucket, Key="big/blob.bin", UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
        )
        # WHEN it is replicated with 5 MB parts (server side: UploadPartCopy; streamed: ranged GET -> UploadPart)
        run(world, PART_SIZE_MB="5", SINGLE_COPY_MAX_MB="5")
        # THEN the bytes and metadata are identical
        got = world.target.get_object(Bucket=world.target_bucket, Key="big/blob.bin")
        assert hashlib.sha256(got["Body"].read()).digest() == hashlib.sha256(body).digest()
        assert got["ContentType"] == "application/x-test" and got["Metadata"]["k"] == "v"
        assert got["ETag"].strip('"').endswith("-4")
