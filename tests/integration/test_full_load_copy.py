"""The cross-partition copy step on its own: bounded calls that resume after the last file copied."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import boto3

from ddb_bridge.core.access import PeerKeys, TargetAccess
from ddb_bridge.loads.fullload.clients import FullLoadClients
from ddb_bridge.loads.fullload.export import copy_export
from ddb_bridge.loads.settings import FullLoadSettings
from harness.load_world import TableShape, load_world


def test_copy_resumes_after_the_last_file_and_copies_every_byte(aws: Any) -> None:
    # GIVEN an export folder of several files (one bigger than a multipart chunk) in the local bucket
    world = load_world(TableShape(), cross_partition=True)
    settings = FullLoadSettings.from_env(world.full_load_env())
    assert settings.cross_partition and settings.peer
    folder = "ddb-bridge/full-load/run-1/AWSDynamoDB/01234-abcd/"
    files = {f"{folder}data/part-{i}.json.gz": os.urandom(1000 * (i + 1)) for i in range(3)}
    files[f"{folder}data/part-big.json.gz"] = os.urandom(9 * 1024 * 1024)
    files[f"{folder}manifest-summary.json"] = b'{"itemCount": 4}'
    for key, body in files.items():
        world.s3.put_object(Bucket=world.export_bucket, Key=key, Body=body)
    clients = FullLoadClients(
        dynamodb=None,
        lambda_=None,
        s3=boto3.client("s3", region_name="us-east-1"),
        target=TargetAccess(settings.target, PeerKeys(settings.peer)),
    )
    plan = {
        "exportBucket": world.export_bucket,
        "peerBucket": world.peer_bucket,
        "exportPrefix": "ddb-bridge/full-load/run-1",
        "safetySeconds": 7200,
        "targetTable": "t",
        "targetRegion": "cn-north-1",
    }
    export = {
        "exportArn": "arn:aws:dynamodb:us-east-1:123456789012:table/t/export/01234-abcd",
        "exportTime": clients.now_ms(),
    }

    # WHEN the step is called with no time to spare, again and again, as the workflow's loop does
    state: dict[str, Any] = {}
    calls = 0
    while not state.get("done"):
        state = copy_export(plan, {}, export, state, clients, budget_seconds=0)
        calls += 1
        assert calls <= len(files)

    # THEN each call copied one file, and the peer bucket holds exactly the same files
    assert calls == len(files) and state["objects"] == len(files)
    assert state["bytes"] == sum(len(b) for b in files.values())
    peer = world.target_session.client("s3")
    for key, body in files.items():
        assert peer.get_object(Bucket=world.peer_bucket, Key=key)["Body"].read() == body


def test_copy_runs_its_files_in_parallel(aws: Any) -> None:
    # GIVEN eight export files, and a peer bucket whose writes are observed as they happen
    world = load_world(TableShape(), cross_partition=True)
    settings = FullLoadSettings.from_env(world.full_load_env())
    assert settings.peer
    folder = "ddb-bridge/full-load/run-2/AWSDynamoDB/0567-ef/"
    files = {f"{folder}data/part-{i}.json.gz": os.urandom(2000 + i) for i in range(8)}
    for key, body in files.items():
        world.s3.put_object(Bucket=world.export_bucket, Key=key, Body=body)
    target = TargetAccess(settings.target, PeerKeys(settings.peer))
    lock, in_flight, most, puts = threading.Lock(), [0], [0], []

    def slow_put(request: Any, **_: Any) -> None:
        puts.append(request.url)
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.2)  # long enough for the other workers to start theirs
        with lock:
            in_flight[0] -= 1

    target.session()._session.register("before-send.s3.PutObject", slow_put)
    clients = FullLoadClients(
        dynamodb=None, lambda_=None, s3=boto3.client("s3", region_name="us-east-1"), target=target
    )
    plan = {
        "exportBucket": world.export_bucket,
        "peerBucket": world.peer_bucket,
        "exportPrefix": "ddb-bridge/full-load/run-2",
        "safetySeconds": 7200,
        "targetTable": "t",
        "targetRegion": "cn-north-1",
    }
    export = {
        "exportArn": "arn:aws:dynamodb:us-east-1:123456789012:table/t/export/0567-ef",
        "exportTime": clients.now_ms(),
    }
    # WHEN one call has time enough for all of them
    state = copy_export(plan, {}, export, {}, clients, budget_seconds=600)
    # THEN they were written several at once, every one of them, byte for byte
    assert state["done"] and state["objects"] == 8
    assert most[0] >= 2, most
    peer = world.target_session.client("s3")
    for key, body in files.items():
        assert peer.get_object(Bucket=world.peer_bucket, Key=key)["Body"].read() == body
    # AND a rerun from scratch (a lost checkpoint) copies nothing again: the peer already holds the same bytes
    assert len(puts) == 8
    again = copy_export(plan, {}, export, {}, clients, budget_seconds=600)
    assert again["objects"] == 8 and len(puts) == 8
