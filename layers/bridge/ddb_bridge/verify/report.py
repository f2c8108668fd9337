"""Verify's files in S3: the parts each call writes (JSON lines), and the report they are merged into.

Each scan call writes the candidates of a page as one part; the recheck writes one part for each of
them (the differences that remained), the repair one more (the same lines with the repair's outcome).
Part names are numbered from the checkpoint, so a call that is run again writes the same names.
The report is every differing key, one JSON line each, in segment order: written with a multipart
upload when it outgrows one buffer, across as many calls as it takes (each call ends on a part boundary).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .clients import Json

PART_BYTES = 8 * 1024 * 1024  # every multipart part but the last must be at least 5 MB


def _line(value: Json) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


@dataclass(frozen=True)
class Parts:
    """The JSON-lines files of one verify under `<prefix>/<verify id>/`."""

    s3: Any
    bucket: str
    prefix: str
    verify_id: str

    def key(self, stage: str, side: str, segment: int, seq: int) -> str:
        """`<prefix>/<id>/<stage>/<side>/<segment>/<seq>.jsonl` (stage: candidates, rechecked, repaired)."""
        return f"{self.prefix}/{self.verify_id}/{stage}/{side}/{segment:04d}/{seq:07d}.jsonl"

    @property
    def report_key(self) -> str:
        """Where the merged report goes."""
        return f"{self.prefix}/{self.verify_id}/report.jsonl"

    def put(self, key: str, lines: list[Json]) -> None:
        """Write one part (an empty part too: the numbering has no holes)."""
        body = b"".join(_line(line) for line in lines)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson")

    def get(self, key: str) -> list[Json]:
        """Read one part."""
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def raw(self, key: str) -> bytes:
        """One part's bytes, as written."""
        return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())


def report_parts(parts: Parts, stage: str, counts: dict[tuple[str, int], int]) -> Iterator[tuple[int, str]]:
    """(index, key) of every part that makes up the report, in order: sides, then segments, then parts."""
    index = 0
    for side, segment in sorted(counts, key=lambda sk: (0 if sk[0] == "source" else 1, sk[1])):
        for seq in range(counts[(side, segment)]):
            yield index, parts.key(stage, side, segment, seq)
            index += 1


def write_report(
    parts: Parts,
    stage: str,
    counts: dict[tuple[str, int], int],
    state: Json,
    time_left: Callable[[], float],
    *,
    part_bytes: int = PART_BYTES,
) -> Json:
    """Merge the parts into the report, from where `state` left off, until done or out of time.

    `state`: {"next": index of the next part, "uploadId", "partNumber"}; returns the new state with
    `done`. A call stops only right after it has uploaded a multipart part, so nothing is carried over.
    """
    upload = state.get("uploadId")
    number = int(state.get("partNumber") or 1)
    start = int(state.get("next") or 0)
    buffer = bytearray()
    position = start
    for index, key in report_parts(parts, stage, counts):
        if index < start:
            continue
        buffer += parts.raw(key)
        position = index + 1
        if len(buffer) >= part_bytes:
            if upload is None:
                upload = parts.s3.create_multipart_upload(
                    Bucket=parts.bucket, Key=parts.report_key, ContentType="application/x-ndjson"
                )["UploadId"]
            parts.s3.upload_part(
                Bucket=parts.bucket, Key=parts.report_key, UploadId=upload, PartNumber=number, Body=bytes(buffer)
            )
            number += 1
            buffer.clear()
            if time_left() <= 0:
                return {"done": False, "next": position, "uploadId": upload, "partNumber": number}
    if upload is None:
        parts.s3.put_object(
            Bucket=parts.bucket, Key=parts.report_key, Body=bytes(buffer), ContentType="application/x-ndjson"
        )
    else:
        if buffer:
            parts.s3.upload_part(
                Bucket=parts.bucket, Key=parts.report_key, UploadId=upload, PartNumber=number, Body=bytes(buffer)
            )
        uploaded = _uploaded(parts, upload)
        parts.s3.complete_multipart_upload(
            Bucket=parts.bucket, Key=parts.report_key, UploadId=upload, MultipartUpload={"Parts": uploaded}
        )
    return {"done": True, "next": position, "uploadId": None, "partNumber": number}


def _uploaded(parts: Parts, upload: str) -> list[Json]:
    """Every part of a multipart upload (ListParts: the calls before this one uploaded some)."""
    out: list[Json] = []
    kwargs: Json = {"Bucket": parts.bucket, "Key": parts.report_key, "UploadId": upload}
    while True:
        page = parts.s3.list_parts(**kwargs)
        out.extend({"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in page.get("Parts", []))
        if not page.get("IsTruncated"):
            return sorted(out, key=lambda p: p["PartNumber"])
        kwargs["PartNumberMarker"] = page["NextPartNumberMarker"]


def add_samples(samples: dict[str, list[Json]], line: Json, size: int, *, max_bytes: int = 64 * 1024) -> None:
    """Keep the first `size` keys of each class, within `max_bytes` of JSON in all."""
    kept = samples.setdefault(line["class"], [])
    if len(kept) < size and len(json.dumps(samples)) + len(json.dumps(line["key"])) <= max_bytes:
        kept.append(line["key"])
