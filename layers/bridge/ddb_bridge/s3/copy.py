"""Copying one object to the target bucket as it is now: server side, or streamed part by part across partitions.

Server side (one principal may read the source and write the target: same partition): CopyObject up to
5 GiB, UploadPartCopy above; no byte passes through Lambda. Across partitions each side has its own
credentials, so bytes must flow through us: ranged GETs (pinned to the source ETag with If-Match)
streamed into UploadPart, one part in memory per worker, never the whole object.

Hand-written rather than s3transfer's `copy`/`upload_fileobj` because a copy must be splittable into part
ranges that other invocations finish (a multipart upload completed once, resumable from ListParts), pinned
to one source version across those invocations; s3transfer's transfers are single calls that cannot resume.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from botocore.exceptions import ClientError

from ..core.access import TargetAccess
from ..core.errors import PermanentError
from .checksums import CONTENT_HEADERS, SOURCE_ETAG_META, ObjectHead
from .failures import SourceChanged, is_no_such_upload, is_not_found, is_precondition_failed
from .settings import BucketSettings, CopyOptions

Json = dict[str, Any]


@dataclass
class Counters:
    """Requests and bytes, for reports and benchmarks (thread-safe adds)."""

    bytes_copied: int = 0
    bytes_through: int = 0  # bytes that passed through this process (streamed copies)
    requests: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, *, copied: int = 0, through: int = 0, requests: int = 0) -> None:
        """Add to the counters."""
        with self._lock:
            self.bytes_copied += copied
            self.bytes_through += through
            self.requests += requests


class ObjectCopier:
    """Reads the source bucket with `source` and writes the target bucket with `target` (boto3 S3 clients).

    With `options.server_side`, `target` also reads the source (CopyObject / UploadPartCopy run there).
    """

    def __init__(self, source: Any, target: Any, source_bucket: str, target_bucket: str, options: CopyOptions) -> None:
        self.source = source
        self.target = target
        self.source_bucket = source_bucket
        self.target_bucket = target_bucket
        self.options = options
        self.counters = Counters()

    # ---- reading ------------------------------------------------------------------------------------------
    def head_source(self, key: str) -> ObjectHead | None:
        """The source object as it is now; None when it does not exist (or its current version is a delete marker)."""
        return self._head(self.source, self.source_bucket, key)

    def head_target(self, key: str) -> ObjectHead | None:
        """The target object; None when absent."""
        return self._head(self.target, self.target_bucket, key)

    def _head(self, client: Any, bucket: str, key: str) -> ObjectHead | None:
        self.counters.add(requests=1)
        try:
            return ObjectHead.of(client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED"))
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise

    def _tagging(self, key: str, head: ObjectHead) -> str | None:
        if not self.options.copy_tags or head.tag_count == 0:
            return None
        self.counters.add(requests=1)
        tags = self.source.get_object_tagging(Bucket=self.source_bucket, Key=key)["TagSet"]
        return urlencode([(t["Key"], t["Value"]) for t in tags]) if tags else None

    def write_args(self, key: str, head: ObjectHead) -> Json:
        """What the target object keeps: headers, user metadata (+ the source's identity), tags, class, SSE."""
        args: Json = {h: head.headers[h] for h in CONTENT_HEADERS if h in head.headers}
        if head.expires:
            args["Expires"] = head.expires
        args["Metadata"] = {**head.metadata, SOURCE_ETAG_META: head.identity}
        storage = self.options.storage_class or head.storage_class
        if storage and storage != "STANDARD":
            args["StorageClass"] = storage
        if head.sse and head.sse.startswith("aws:kms"):
            args["ServerSideEncryption"] = head.sse
            if self.options.kms_key_id:
                args["SSEKMSKeyId"] = self.options.kms_key_id
        elif head.sse == "AES256":
            args["ServerSideEncryption"] = "AES256"
        tagging = self._tagging(key, head)
        if tagging:
            args["Tagging"] = tagging
        return args

    # ---- one call: small and medium objects ----------------------------------------------------------------
    def copy(self, key: str, target_key: str, head: ObjectHead) -> int:
        """Copy the source object described by `head` (pinned to its ETag); returns the bytes copied."""
        if self.options.is_multipart(head.size):
            job = self.start(key, target_key, head)
            try:
                self.copy_parts(job, 1, job["parts"])
                self.complete(job)
            except BaseException:
                self.abort(job)
                raise
            return head.size
        args = self.write_args(key, head)
        try:
            if self.options.server_side:
                if "Tagging" in args:
                    args["TaggingDirective"] = "REPLACE"
                self.target.copy_object(
                    Bucket=self.target_bucket,
                    Key=target_key,
                    CopySource={"Bucket": self.source_bucket, "Key": key},
                    CopySourceIfMatch=f'"{head.etag}"',
                    MetadataDirective="REPLACE",
                    **args,
                )
                self.counters.add(copied=head.size, requests=1)
            else:
                body = self.source.get_object(Bucket=self.source_bucket, Key=key, IfMatch=f'"{head.etag}"')["Body"]
                data = body.read()  # at most one part's size (is_multipart above)
                self.target.put_object(Bucket=self.target_bucket, Key=target_key, Body=data, **args)
                self.counters.add(copied=len(data), through=len(data), requests=2)
        except ClientError as exc:
            if is_precondition_failed(exc) or is_not_found(exc):
                raise SourceChanged(f"{key} changed while it was copied") from exc
            raise
        return head.size

    def copy_listed(self, key: str, target_key: str, entry: Json) -> int:
        """Server side, from a listing entry alone: one CopyObject that keeps headers, metadata and tags (COPY).

        Only for single-part objects (their ETag is the MD5 S3 keeps on the copy, which later proves the
        copy identical) and without a KMS key mapping; the caller takes the HEAD path otherwise.
        """
        args: Json = {}
        storage = self.options.storage_class or entry.get("StorageClass")
        if storage and storage != "STANDARD":
            args["StorageClass"] = storage
        etag = str(entry["ETag"]).strip('"')
        try:
            self.target.copy_object(
                Bucket=self.target_bucket,
                Key=target_key,
                CopySource={"Bucket": self.source_bucket, "Key": key},
                CopySourceIfMatch=f'"{etag}"',
                MetadataDirective="COPY",
                TaggingDirective="COPY" if self.options.copy_tags else "REPLACE",
                **args,
            )
        except ClientError as exc:
            if is_precondition_failed(exc) or is_not_found(exc):
                raise SourceChanged(f"{key} changed since it was listed") from exc
            raise
        self.counters.add(copied=int(entry["Size"]), requests=1)
        return int(entry["Size"])

    def can_copy_listed(self, entry: Json) -> bool:
        """True when `copy_listed` may copy this listing entry."""
        return (
            self.options.server_side
            and not self.options.kms_key_id
            and "-" not in str(entry["ETag"])
            and int(entry["Size"]) <= self.options.single_max
        )

    def delete_target(self, target_key: str) -> None:
        """Delete the target object (a missing one is fine: S3 answers 204 either way)."""
        self.counters.add(requests=1)
        self.target.delete_object(Bucket=self.target_bucket, Key=target_key)

    # ---- multipart: splittable, resumable ------------------------------------------------------------------
    def start(self, key: str, target_key: str, head: ObjectHead, *, event_ms: int = 0) -> Json:
        """CreateMultipartUpload with everything the object keeps; returns the job (JSON: it travels in messages)."""
        part_size = self.options.part_size_for(head.size)
        self.counters.add(requests=1)
        upload = self.target.create_multipart_upload(
            Bucket=self.target_bucket, Key=target_key, **self.write_args(key, head)
        )
        return {
            "sourceBucket": self.source_bucket,
            "sourceKey": key,
            "targetBucket": self.target_bucket,
            "targetKey": target_key,
            "uploadId": upload["UploadId"],
            "etag": head.etag,
            "size": head.size,
            "partSize": part_size,
            "parts": (head.size + part_size - 1) // part_size,
            "serverSide": self.options.server_side,
            "eventMs": event_ms,
        }

    def uploaded_parts(self, job: Json) -> dict[int, Json]:
        """The parts already in the upload (ListParts): what a resumed copy skips, and what completion lists."""
        parts: dict[int, Json] = {}
        kwargs: Json = {"Bucket": job["targetBucket"], "Key": job["targetKey"], "UploadId": job["uploadId"]}
        while True:
            self.counters.add(requests=1)
            page = self.target.list_parts(**kwargs)
            for part in page.get("Parts", []):
                parts[int(part["PartNumber"])] = part
            if not page.get("IsTruncated"):
                return parts
            kwargs["PartNumberMarker"] = page["NextPartNumberMarker"]

    def copy_parts(self, job: Json, first: int, last: int, *, skip: Iterable[int] | None = None) -> int:
        """Copy parts first..last (1-based) that are not uploaded yet, in parallel; returns the bytes copied."""
        done = set(skip) if skip is not None else set(self.uploaded_parts(job))
        todo = [n for n in range(first, min(last, int(job["parts"])) + 1) if n not in done]
        if not todo:
            return 0
        with ThreadPoolExecutor(max_workers=min(self.options.concurrency, len(todo))) as pool:
            return sum(pool.map(lambda n: self._part(job, n), todo))

    def _part(self, job: Json, number: int) -> int:
        size, part_size = int(job["size"]), int(job["partSize"])
        start = (number - 1) * part_size
        end = min(size, start + part_size) - 1
        where: Json = {"Bucket": job["targetBucket"], "Key": job["targetKey"], "UploadId": job["uploadId"]}
        try:
            if job["serverSide"]:
                self.target.upload_part_copy(
                    **where,
                    PartNumber=number,
                    CopySource={"Bucket": job["sourceBucket"], "Key": job["sourceKey"]},
                    CopySourceRange=f"bytes={start}-{end}",
                    CopySourceIfMatch=f'"{job["etag"]}"',
                )
                self.counters.add(copied=end - start + 1, requests=1)
            else:
                got = self.source.get_object(
                    Bucket=job["sourceBucket"],
                    Key=job["sourceKey"],
                    Range=f"bytes={start}-{end}",
                    IfMatch=f'"{job["etag"]}"',
                )
                data = got["Body"].read()  # one part: the only bytes this worker holds
                if len(data) != end - start + 1:
                    raise SourceChanged(
                        f"{job['sourceKey']}: part {number} read {len(data)} of {end - start + 1} bytes"
                    )
                self.target.upload_part(**where, PartNumber=number, Body=data)
                self.counters.add(copied=len(data), through=len(data), requests=2)
                del data
        except ClientError as exc:
            if is_precondition_failed(exc) or is_not_found(exc):
                raise SourceChanged(f"{job['sourceKey']} changed during a multipart copy") from exc
            raise
        return end - start + 1

    def complete(self, job: Json) -> str:
        """Complete the upload once every part is in: "done", else "waiting" (other tasks copy them) or "gone".

        "gone": another task completed it, or it was aborted.
        The source is read once more first: if it changed since the job started, the upload is aborted
        (its new version has its own event, and a resync copies it).
        """
        try:
            parts = self.uploaded_parts(job)
        except ClientError as exc:
            if is_no_such_upload(exc):
                return "gone"
            raise
        if len(parts) < int(job["parts"]):
            return "waiting"
        now = self.head_source(job["sourceKey"])
        if now is None or now.etag != job["etag"]:
            self.abort(job)
            raise SourceChanged(f"{job['sourceKey']} changed during a multipart copy; upload aborted")
        listed = [
            {k: v for k, v in parts[n].items() if k in ("ETag", "PartNumber") or k.startswith("Checksum")}
            for n in sorted(parts)
        ]
        self.counters.add(requests=1)
        try:
            self.target.complete_multipart_upload(
                Bucket=job["targetBucket"],
                Key=job["targetKey"],
                UploadId=job["uploadId"],
                MultipartUpload={"Parts": listed},
            )
        except ClientError as exc:
            if not is_no_such_upload(exc):
                raise
            return "gone"
        return "done"

    def abort(self, job: Json) -> None:
        """Abort the upload (its parts are freed); an upload already gone is fine."""
        self.counters.add(requests=1)
        try:
            self.target.abort_multipart_upload(
                Bucket=job["targetBucket"], Key=job["targetKey"], UploadId=job["uploadId"]
            )
        except ClientError as exc:
            if not is_no_such_upload(exc):
                raise


def check_key(key: str) -> None:
    """Refuse keys S3 cannot store (more than 1024 UTF-8 bytes)."""
    if len(key.encode("utf-8")) > 1024:
        raise PermanentError("KeyTooLong", f"target key of {len(key.encode('utf-8'))} bytes exceeds S3's 1024")


@dataclass
class CopierRuntime:
    """What a warm bucket function keeps (replicator and backfill alike): settings, the target, the source client."""

    settings: BucketSettings
    access: TargetAccess
    source_s3: Any
    _copier: ObjectCopier | None = field(default=None, init=False, repr=False)
    _session: Any = field(default=None, init=False, repr=False)

    def copier(self) -> ObjectCopier:
        """A copier on the current target session (rebuilt after a refresh or a key rotation)."""
        session = self.access.session()
        if self._copier is None or session is not self._session:
            target = self.access.client("s3", pool=self.settings.copy.concurrency * 2 + 4)
            pair = self.settings.buckets
            # the source is read with this function's own role; server-side copies run on the target side
            self._copier = ObjectCopier(
                self.source_s3, target, pair.source_bucket, pair.target_bucket, self.settings.copy
            )
            self._session = session
        return self._copier
