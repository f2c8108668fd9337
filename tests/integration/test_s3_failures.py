"""Every failure path of bucket_replicator: parked whole, retried, redriven, or not a failure at all."""

from __future__ import annotations

import json
import os
from typing import Any

from harness.faults import S3Fault, inject
from harness.s3_world import BucketWorld, bucket_world
from harness.sqs_source import bodies_of


def clients(world: BucketWorld, fn: Any) -> tuple[Any, Any]:
    rt = fn.layer_module("ddb_bridge.s3.replicator").runtime()
    return rt.source_s3, rt.replicator().copier.target


def key_is(key: str) -> Any:
    return lambda request: request.url.split("?")[0].endswith("/" + key)


def test_access_denied_on_one_key_parks_its_event_whole_and_the_rest_flow(aws: Any) -> None:
    world = bucket_world()
    world.put("ok.txt", b"fine")
    world.put("secret.txt", b"no")
    fn = world.replicator()
    source, _ = clients(world, fn)
    fault = inject(source, "HeadObject", S3Fault("403", times=99, status=403, when=key_is("secret.txt")))
    world.source_of(fn).drain()
    parked = world.parked()
    assert fault.injected >= 1
    assert [p["reason"] for p in parked] == ["AccessDenied"]
    assert json.loads(parked[0]["record"]["body"])["Records"][0]["s3"]["object"]["key"] == "secret.txt"
    assert world.target_contents() == {"ok.txt": b"fine"}


def test_a_404_after_a_delete_race_is_not_a_failure(aws: Any) -> None:
    # GIVEN an object deleted between the replicator's HEAD and its GET (streamed path)
    world = bucket_world(cross_partition=True)
    world.put("racy.txt", b"short-lived")
    fn = world.replicator()
    source, _ = clients(world, fn)

    def delete_first(request: Any) -> bool:
        world.delete("racy.txt")
        return False  # the real request then meets the real 404

    inject(source, "GetObject", S3Fault("NoSuchKey", times=1, when=delete_first))
    sqs_source = world.source_of(fn)
    sqs_source.drain()
    # THEN nothing failed or parked, and the target has no such object
    assert sqs_source.failures_reported == 0 and world.parked() == []
    assert world.target_contents() == {}


def test_throttling_is_retried_through_the_queue(aws: Any) -> None:
    world = bucket_world()
    world.put("hot.txt", b"x" * 100)
    fn = world.replicator(TARGET_MAX_ATTEMPTS="1")
    _, target = clients(world, fn)
    fault = inject(target, "CopyObject", S3Fault("SlowDown", times=2, status=503))  # botocore retries once
    sqs_source = world.source_of(fn)
    sqs_source.drain()
    assert fault.injected == 2 and sqs_source.failures_reported == 1
    assert world.target_contents() == {"hot.txt": b"x" * 100} and world.parked() == []


def test_retries_that_never_succeed_end_in_the_dlq(aws: Any) -> None:
    world = bucket_world(max_receives=2)
    world.put("doomed.txt", b"x")
    fn = world.replicator(TARGET_MAX_ATTEMPTS="1")
    _, target = clients(world, fn)
    inject(target, "CopyObject", S3Fault("InternalError", times=10_000, status=500))
    world.source_of(fn).drain(timeout_s=30)
    dead = bodies_of(world.sqs, world.dlq_url)
    assert [d["Records"][0]["s3"]["object"]["key"] for d in dead] == ["doomed.txt"]
    assert world.parked() == [] and world.target_contents() == {}


def test_a_poison_message_is_parked_whole(aws: Any) -> None:
    world = bucket_world()
    world.put("good.txt", b"g")
    world.sqs.send_message(QueueUrl=world.queue_url, MessageBody="{not json")
    world.sqs.send_message(
        QueueUrl=world.queue_url, MessageBody=json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]})
    )
    fn = world.replicator()
    world.source_of(fn).drain()
    reasons = sorted(p["reason"] for p in world.parked())
    assert reasons == ["MalformedEvent", "MalformedMessage"]
    assert world.target_contents() == {"good.txt": b"g"}


def test_a_key_outside_the_mapping_is_parked(aws: Any) -> None:
    world = bucket_world()
    world.put("in/a.txt", b"a")
    world.put("out/b.txt", b"b")
    fn = world.replicator(SOURCE_PREFIX="in/", TARGET_PREFIX="mirror/")
    world.source_of(fn).drain()
    assert [p["reason"] for p in world.parked()] == ["KeyOutsidePrefix"]
    assert world.target_contents() == {"mirror/a.txt": b"a"}


def test_split_copy_interrupted_then_resumed(aws: Any) -> None:
    # GIVEN an object larger than one invocation copies (INLINE_MAX 5 MB): split into one task per part
    world = bucket_world(cross_partition=True)
    body = os.urandom(12 * 1024 * 1024)
    world.put("huge.bin", body, Metadata={"m": "1"})
    env = {"INLINE_MAX_MB": "5", "PART_SIZE_MB": "5", "PARTS_PER_TASK": "1", "TARGET_MAX_ATTEMPTS": "1"}
    fn = world.replicator(**env)
    _, target = clients(world, fn)
    parts_seen: list[str] = []
    target.meta.events.register("before-send.s3.UploadPart", lambda request, **_: parts_seen.append(request.url))

    def part_two(request: Any) -> bool:
        return "partNumber=2" in request.url

    fault = inject(target, "UploadPart", S3Fault("InternalError", times=2, status=500, when=part_two))
    sqs_source = world.source_of(fn)
    sqs_source.drain()
    # THEN the failed task came back, copied only its part, and one task completed the upload
    assert fault.injected == 2 and sqs_source.failures_reported == 1
    assert sum("partNumber=1" in u for u in parts_seen) == 1 and sum("partNumber=3" in u for u in parts_seen) == 1
    got = world.target.get_object(Bucket=world.target_bucket, Key="huge.bin")
    assert got["Body"].read() == body and got["Metadata"]["m"] == "1"
    assert not world.target.list_multipart_uploads(Bucket=world.target_bucket).get("Uploads")


def test_split_copy_of_a_source_that_changed_is_aborted_and_the_new_version_copied(aws: Any) -> None:
    world = bucket_world()
    first, second = os.urandom(11 * 1024 * 1024), os.urandom(11 * 1024 * 1024)
    world.put("moving.bin", first)
    env = {"INLINE_MAX_MB": "5", "PART_SIZE_MB": "5", "SINGLE_COPY_MAX_MB": "5", "PARTS_PER_TASK": "1"}
    fn = world.replicator(**env)
    sqs_source = world.source_of(fn)
    sqs_source.poll_once()  # the event: the upload is started and its tasks queued
    uploads = world.target.list_multipart_uploads(Bucket=world.target_bucket).get("Uploads", [])
    assert len(uploads) == 1
    world.put("moving.bin", second)  # the source changes under the split copy
    sqs_source.drain()
    assert world.target_contents() == {"moving.bin": second}
    left = world.target.list_multipart_uploads(Bucket=world.target_bucket).get("Uploads", [])
    assert left == []  # the first upload was aborted, not abandoned
