"""The verify report: parts merged into one JSON-lines object in S3 (moto over HTTP), small or multipart,
in one call or over several that stop on part boundaries."""

from __future__ import annotations

import json
from typing import Any

import boto3

from ddb_bridge.verify.report import PART_BYTES, Parts, write_report


def parts_with_lines(s3: Any, counts: dict[tuple[str, int], int], line_bytes: int) -> tuple[Parts, list[str]]:
    """Parts full of lines `{"n": i, "pad": ...}`; returns them and every line in report order."""
    parts = Parts(s3, "reports", "ddb-bridge/verify", "v1")
    expected: list[str] = []
    n = 0
    for side in ("source", "target"):
        for segment in range(3):
            for seq in range(counts.get((side, segment), 0)):
                lines = [{"n": n + i, "pad": "x" * line_bytes} for i in range(40)]
                n += 40
                parts.put(parts.key("rechecked", side, segment, seq), lines)
                expected += [json.dumps(line, separators=(",", ":")) for line in lines]
    return parts, expected


def read_back(s3: Any, parts: Parts) -> list[str]:
    body = s3.get_object(Bucket="reports", Key=parts.report_key)["Body"].read().decode()
    return body.splitlines()


def test_a_small_report_is_one_object_in_segment_order(aws: Any) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="reports")
    counts = {("target", 1): 1, ("source", 2): 2, ("source", 0): 1, ("target", 0): 0}
    parts, expected = parts_with_lines(s3, counts, 10)
    state = write_report(parts, "rechecked", counts, {}, lambda: 100.0)
    assert state["done"] is True and state["uploadId"] is None
    assert read_back(s3, parts) == expected  # source 0, source 2 (2 parts), target 1


def test_a_large_report_is_a_multipart_upload_across_calls(aws: Any) -> None:
    # GIVEN parts of ~2 MB each, 7 of them (~14 MB: more than one multipart part of at least 5 MB)
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="reports")
    counts = {("source", 0): 4, ("target", 2): 3}
    parts, expected = parts_with_lines(s3, counts, 50_000)

    # WHEN each call has time for one multipart part only
    states = [write_report(parts, "rechecked", counts, {}, lambda: 0.0, part_bytes=5 * 1024 * 1024)]
    while not states[-1]["done"]:
        states.append(write_report(parts, "rechecked", counts, states[-1], lambda: 0.0, part_bytes=5 * 1024 * 1024))

    # THEN it took several calls, each stopping right after a part, and the object holds every line in order
    assert len(states) >= 2 and states[0]["uploadId"] and states[0]["next"] < 7
    assert read_back(s3, parts) == expected
    assert PART_BYTES >= 5 * 1024 * 1024  # S3's minimum for every part but the last
