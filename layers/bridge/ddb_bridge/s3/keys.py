"""The key mapping source -> target (a prefix swap, which keeps listing order), and its refusals."""

from __future__ import annotations

from ..core.errors import PermanentError
from .copy import check_key
from .settings import BucketPair


def target_key(pair: BucketPair, key: str) -> str:
    """The target key of a source key; PermanentError for a key the mapping cannot express."""
    if not key.startswith(pair.source_prefix):
        raise PermanentError(
            "KeyOutsidePrefix", f"key {key[:200]!r} is outside the replicated prefix {pair.source_prefix!r}"
        )
    mapped = pair.target_prefix + key[len(pair.source_prefix) :]
    check_key(mapped)
    return mapped


def source_key(pair: BucketPair, key: str) -> str | None:
    """The source key a target key stands for; None when the target key is outside the mapped prefix."""
    if not key.startswith(pair.target_prefix):
        return None
    return pair.source_prefix + key[len(pair.target_prefix) :]
