"""What an object is (HEAD), and whether a target object holds the same content as its source: never size alone.

In order: an S3 additional checksum both sides carry for the same algorithm; the source's content identity
that the replicator records in the target's metadata when it copies (the source ETag: an MD5 of the bytes
for a single-part object, of the part MD5s for a multipart one); equal single-part ETags of unencrypted
or SSE-S3 objects (S3 documents them as the MD5 of the content).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

SOURCE_ETAG_META = "ddb-bridge-source-etag"  # user metadata the replicator adds on the target (reserved)
ALGORITHMS = ("ChecksumCRC64NVME", "ChecksumCRC32C", "ChecksumCRC32", "ChecksumSHA256", "ChecksumSHA1")
CONTENT_HEADERS = ("ContentType", "ContentEncoding", "ContentLanguage", "ContentDisposition", "CacheControl")


@dataclass(frozen=True)
class ObjectHead:
    """The parts of HeadObject that decide copies and comparisons."""

    size: int
    etag: str  # without quotes
    checksums: dict[str, str] = field(default_factory=dict)  # algorithm -> value (as S3 gives it)
    checksum_type: str | None = None  # FULL_OBJECT or COMPOSITE
    headers: dict[str, str] = field(default_factory=dict)  # Content-Type... (CONTENT_HEADERS)
    expires: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # user metadata without the replicator's own keys
    source_etag: str | None = None  # SOURCE_ETAG_META, on objects the replicator wrote
    storage_class: str = "STANDARD"
    sse: str | None = None  # AES256, aws:kms, aws:kms:dsse
    kms_key_id: str | None = None
    version_id: str | None = None
    tag_count: int = 0
    parts: int = 1  # from the ETag's -N suffix

    @property
    def multipart(self) -> bool:
        """True when the ETag is a multipart ETag (`...-N`)."""
        return "-" in self.etag

    @property
    def etag_is_md5(self) -> bool:
        """True when S3 documents the ETag as the MD5 of the bytes (single part, not SSE-KMS/SSE-C)."""
        return not self.multipart and self.sse in (None, "AES256")

    @property
    def identity(self) -> str:
        """What the replicator records on the target as this source object's content identity."""
        return self.etag

    @classmethod
    def of(cls, head: dict[str, Any]) -> ObjectHead:
        """From a HeadObject (or GetObject) response."""
        meta = {str(k).lower(): str(v) for k, v in (head.get("Metadata") or {}).items()}
        etag = str(head.get("ETag") or "").strip('"')
        expires = head.get("Expires") or head.get("ExpiresString")
        if isinstance(expires, datetime):
            expires = expires.strftime("%a, %d %b %Y %H:%M:%S GMT")
        return cls(
            size=int(head.get("ContentLength") or 0),
            etag=etag,
            checksums={a: str(head[a]) for a in ALGORITHMS if head.get(a)},
            checksum_type=head.get("ChecksumType"),
            headers={h: str(head[h]) for h in CONTENT_HEADERS if head.get(h)},
            expires=str(expires) if expires else None,
            metadata={k: v for k, v in meta.items() if k != SOURCE_ETAG_META},
            source_etag=meta.get(SOURCE_ETAG_META),
            storage_class=str(head.get("StorageClass") or "STANDARD"),
            sse=head.get("ServerSideEncryption"),
            kms_key_id=head.get("SSEKMSKeyId"),
            version_id=head.get("VersionId"),
            tag_count=int(head.get("TagCount") or 0),
            parts=int(etag.rsplit("-", 1)[1]) if "-" in etag and etag.rsplit("-", 1)[1].isdigit() else 1,
        )


def same_content(source: ObjectHead, target: ObjectHead) -> bool:
    """True when the target holds the source's bytes, proven by a checksum; a size match alone never counts."""
    if source.size != target.size:
        return False
    if target.source_etag is not None and target.source_etag == source.identity:
        return True  # the replicator copied exactly this source object
    for algorithm in ALGORITHMS:
        a, b = source.checksums.get(algorithm), target.checksums.get(algorithm)
        if a and b and a == b and "-" not in a:
            return True  # a full-object checksum of the same algorithm
        if a and b and "-" in a and a == b:
            return True  # a composite checksum: same parts, same bytes
    return source.etag_is_md5 and target.etag_is_md5 and source.etag == target.etag


def same_listing(source: dict[str, Any], target: dict[str, Any]) -> bool:
    """From ListObjectsV2 entries alone: equal ETags and sizes (an equal multipart ETag means equal parts).

    False means "not proven": the caller reads both HEADs (`same_content`) before deciding to copy.
    """
    return int(source["Size"]) == int(target["Size"]) and source["ETag"].strip('"') == target["ETag"].strip('"')


def same_object(source: ObjectHead, target: ObjectHead, *, tags: bool) -> bool:
    """Same content, and the same headers and user metadata (and tag count when tags are copied)."""
    if not same_content(source, target):
        return False
    if source.headers != target.headers or source.metadata != target.metadata or source.expires != target.expires:
        return False
    return not tags or source.tag_count == target.tag_count
