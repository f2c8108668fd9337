"""The streamed copy (other partition) never holds the object: peak memory stays near a few parts.

moto runs in a process of its own here, so tracemalloc sees only this process: the copier, botocore,
and nothing of the server that stores the bytes.
"""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from typing import Any

import boto3

from ddb_bridge.s3.checksums import ObjectHead
from ddb_bridge.s3.copy import ObjectCopier
from ddb_bridge.s3.settings import MIB, CopyOptions
from harness import moto_server

SIZE = 48 * MIB


def test_streamed_copy_peak_memory_is_a_few_parts_not_the_object() -> None:
    with moto_server.running(own_process=True):
        s3: Any = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="mem-src")
        s3.create_bucket(Bucket="mem-dst")
        body = os.urandom(SIZE)
        digest = hashlib.sha256(body).hexdigest()
        s3.put_object(Bucket="mem-src", Key="big.bin", Body=body)
        del body
        copier = ObjectCopier(
            s3, s3, "mem-src", "mem-dst", CopyOptions(server_side=False, part_size=5 * MIB, concurrency=2)
        )
        head = copier.head_source("big.bin")
        assert isinstance(head, ObjectHead)
        # WHEN the object is streamed part by part (ranged GET -> UploadPart)
        tracemalloc.start()
        try:
            copier.copy("big.bin", "big.bin", head)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # THEN the bytes arrived whole, and this process never held more than a few parts at once
        got = hashlib.sha256(s3.get_object(Bucket="mem-dst", Key="big.bin")["Body"].read()).hexdigest()
        assert got == digest
        assert copier.counters.bytes_through == SIZE
        assert peak < SIZE / 2, f"peak {peak / MIB:.1f} MiB for a {SIZE // MIB} MiB object"
