"""S3 pieces without a network: event parsing, the sequencer rule, key mapping, content identity, settings."""

from __future__ import annotations

import json

import pytest

from ddb_bridge.core.errors import PermanentError
from ddb_bridge.core.settings import SettingsError
from ddb_bridge.s3.checksums import SOURCE_ETAG_META, ObjectHead, same_content, same_object
from ddb_bridge.s3.events import CREATED, REMOVED, ObjectEvent, PartsTask, decode_key, newer, parse_body
from ddb_bridge.s3.keys import source_key, target_key
from ddb_bridge.s3.settings import MIB, BucketPair, BucketSettings, CopyOptions


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("a+b.txt", "a b.txt"),
        ("a%2Bb.txt", "a+b.txt"),
        ("100%25.txt", "100%.txt"),
        ("%C3%BC%2F%E6%97%A5.bin", "ü/日.bin"),
        ("dir%2Fsub+dir%2Fx", "dir/sub dir/x"),
    ],
)
def test_keys_are_url_decoded(raw: str, key: str) -> None:
    assert decode_key(raw) == key


def test_a_key_that_is_not_utf8_or_too_long_is_permanent() -> None:
    with pytest.raises(PermanentError, match="UTF-8"):
        decode_key("%FF%FE")
    with pytest.raises(PermanentError) as info:
        decode_key("a" * 1025)
    assert info.value.reason == "KeyTooLong"


@pytest.mark.parametrize(
    ("a", "b", "a_is_newer"),
    [
        ("0055AED6DCD90281E6", "0055AED6DCD90281E5", True),
        ("10", "f", True),  # unpadded string order would say "10" < "f"
        ("f", "0f", False),  # equal after padding
        ("1F0", "1f", True),  # case does not matter
        ("", "1", False),
    ],
)
def test_sequencers_compare_left_padded(a: str, b: str, a_is_newer: bool) -> None:
    assert newer(a, b) is a_is_newer


def test_parse_every_shape() -> None:
    note = {
        "Records": [
            {
                "eventName": "ObjectRemoved:DeleteMarkerCreated",
                "eventTime": "2026-11-30T10:00:00.000Z",
                "s3": {"bucket": {"name": "b"}, "object": {"key": "x+y", "sequencer": "0A", "versionId": "v1"}},
            },
            {"eventName": "ObjectTagging:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "x"}}},
        ]
    }
    (event,) = parse_body(json.dumps(note))
    assert event == ObjectEvent("b", "x y", REMOVED, "0A", 1796032800000, "ObjectRemoved:DeleteMarkerCreated", "v1")
    bridge = {
        "source": "aws.s3",
        "detail-type": "Object Deleted",
        "time": "2026-11-30T10:00:00Z",
        "detail": {"bucket": {"name": "b"}, "object": {"key": "k%2B1"}, "deletion-type": "Delete Marker Created"},
    }
    (deleted,) = parse_body(json.dumps(bridge))
    assert (deleted.kind, deleted.key, deleted.name) == (REMOVED, "k+1", "Object Deleted:DeleteMarkerCreated")
    assert parse_body(json.dumps(bridge), eventbridge_keys_encoded=False)[0].key == "k%2B1"
    assert parse_body(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})) == []
    task = {"ddbBridgeParts": {"job": {"uploadId": "u"}, "first": 3, "last": 4}}
    assert parse_body(json.dumps(task)) == [PartsTask({"uploadId": "u"}, 3, 4)]
    created = dict(bridge, **{"detail-type": "Object Created"})
    assert parse_body(json.dumps(created))[0].kind == CREATED


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{", "MalformedMessage"),
        ("[]", "MalformedMessage"),
        ("{}", "UnknownMessage"),
        ('{"Records": [1]}', "MalformedEvent"),
    ],
)
def test_malformed_messages_are_permanent(body: str, reason: str) -> None:
    with pytest.raises(PermanentError) as info:
        parse_body(body)
    assert info.value.reason == reason


def test_prefix_mapping_keeps_order_and_refuses_outsiders() -> None:
    pair = BucketPair("s", "t", "in/", "mirror/v2/")
    assert target_key(pair, "in/a b") == "mirror/v2/a b"
    assert source_key(pair, "mirror/v2/a b") == "in/a b"
    assert source_key(pair, "other/x") is None
    with pytest.raises(PermanentError) as info:
        target_key(pair, "out/x")
    assert info.value.reason == "KeyOutsidePrefix"
    with pytest.raises(PermanentError):
        target_key(BucketPair("s", "t", "", "p" * 1000), "k" * 30)


def head(**kw: object) -> ObjectHead:
    base = {"ContentLength": 10, "ETag": '"abc"', "Metadata": {}}
    base.update(kw)
    return ObjectHead.of(base)


def test_same_content_is_proven_by_checksums_never_by_size() -> None:
    assert not same_content(head(), head(ETag='"def"'))  # same size, other bytes
    assert same_content(head(), head())  # single-part ETags are MD5s
    assert not same_content(head(ServerSideEncryption="aws:kms"), head(ServerSideEncryption="aws:kms"))
    assert same_content(head(ChecksumSHA256="x="), head(ETag='"zzz-2"', ChecksumSHA256="x="))
    assert same_content(head(ETag='"m-3"'), head(ETag='"other"', Metadata={SOURCE_ETAG_META: "m-3"}))
    assert not same_content(head(ETag='"m-3"'), head(ETag='"m-3"', ContentLength=11))
    assert not same_object(head(ContentType="a/b"), head(ContentType="a/c"), tags=False)
    assert not same_object(head(TagCount=1), head(), tags=True)
    assert same_object(head(TagCount=1), head(), tags=False)


def test_part_sizes_grow_past_ten_thousand_parts() -> None:
    options = CopyOptions(server_side=False, part_size=8 * MIB)
    assert options.part_size_for(10 * MIB) == 8 * MIB
    big = 5 * 1024 * 1024 * MIB  # 5 TiB
    assert big / options.part_size_for(big) <= 10_000


def test_settings_name_the_bad_variable() -> None:
    env = {"AWS_REGION": "us-east-1", "SOURCE_BUCKET_NAME": "src-bucket", "TARGET_BUCKET_NAME": "dst-bucket"}
    settings = BucketSettings.from_env(env)
    assert settings.copy.server_side and not settings.cross_partition
    with pytest.raises(SettingsError, match="PARKING_QUEUE_URL"):
        settings.require_replicator()
    with pytest.raises(SettingsError, match="PEER_CREDENTIALS"):
        BucketSettings.from_env({**env, "TARGET_REGION": "cn-north-1"})
    cross = BucketSettings.from_env({**env, "TARGET_REGION": "cn-north-1", "PEER_CREDENTIALS_SECRET": "peer"})
    assert cross.cross_partition and not cross.copy.server_side
    with pytest.raises(SettingsError, match="COPY_MODE=server"):
        BucketSettings.from_env(
            {**env, "TARGET_REGION": "cn-north-1", "PEER_CREDENTIALS_SECRET": "p", "COPY_MODE": "server"}
        )
    with pytest.raises(SettingsError, match="TARGET_STORAGE_CLASS"):
        BucketSettings.from_env({**env, "TARGET_STORAGE_CLASS": "FAST"})
    with pytest.raises(SettingsError, match="PART_SIZE_MB"):
        BucketSettings.from_env({**env, "PART_SIZE_MB": "4"})
