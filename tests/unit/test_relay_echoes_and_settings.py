"""Echo markers' identities, the relay's filter, and the relay's and applier's settings."""

from __future__ import annotations

import base64

import pytest

from ddb_bridge.core.settings import SettingsError
from ddb_bridge.core.versions import Version
from ddb_bridge.relay.echoes import digest, identity, marker_key
from ddb_bridge.relay.settings import ApplierSettings, RelaySettings
from harness.bidirectional import matches, relay_filter, relay_filter_patterns


def test_a_digest_is_the_same_for_the_written_item_and_what_the_stream_shows():
    # GIVEN an item as boto3 writes it (bytes) and as Lambda's stream shows it (base64, sets reordered,
    # numbers normalised as DynamoDB stores them)
    written = {
        "pk": {"S": "a"},
        "b": {"B": b"\x00\xff"},
        "ss": {"SS": ["y", "x"]},
        "n": {"N": "1.50"},
        "m": {"M": {"bs": {"BS": [b"\x02", b"\x01"]}, "z": {"N": "100"}}},
    }
    shown = {
        "m": {"M": {"z": {"N": "1E+2"}, "bs": {"BS": ["AQ==", "Ag=="]}}},
        "n": {"N": "1.5"},
        "ss": {"SS": ["x", "y"]},
        "b": {"B": base64.b64encode(b"\x00\xff").decode()},
        "pk": {"S": "a"},
    }
    # THEN their digests match, and any change of content changes it
    assert digest(written) == digest(shown)
    assert digest({**written, "n": {"N": "1.51"}}) != digest(written)
    assert digest({**written, "n": {"S": "1.5"}}) != digest(written)


def test_an_identity_is_the_version_when_there_is_one_else_the_content():
    image = {"pk": {"S": "a"}}
    assert identity(Version(5, "cn-north-1"), image) == "v:5:cn-north-1"
    assert identity(None, image) == f"u:{digest(image)}"
    assert identity(None, None) is None
    assert marker_key("k", "v:5:x") != marker_key("k", "v:5:y") != marker_key("k2", "v:5:x")
    assert marker_key("k", "v:5:x")["pk"]["S"].startswith("echo#")


def record(new: dict | None = None, old: dict | None = None, name: str = "MODIFY") -> dict:
    body: dict = {"Keys": {"pk": {"S": "a"}}}
    if new is not None:
        body["NewImage"] = new
    if old is not None:
        body["OldImage"] = old
    return {"eventName": name, "dynamodb": body}


def test_the_relay_filter_passes_local_stamps_removes_and_unstamped_puts_only():
    keep = relay_filter("cn-north-1")
    local = record({"pk": {"S": "a"}, "last_updater_region": {"S": "cn-north-1"}})
    peer = record({"pk": {"S": "a"}, "last_updater_region": {"S": "ap-southeast-1"}})
    remove = record(None, {"pk": {"S": "a"}, "last_updater_region": {"S": "ap-southeast-1"}}, "REMOVE")
    unstamped = record({"pk": {"S": "a"}})
    assert keep([local, peer, remove, unstamped]) == [local, remove, unstamped]
    assert not any(matches(p, peer) for p in relay_filter_patterns("cn-north-1"))


def env(**overrides: str) -> dict[str, str]:
    base = {
        "AWS_REGION": "cn-north-1",
        "LOCAL_TABLE_NAME": "orders",
        "TOMBSTONE_TABLE_NAME": "orders-tombstones",
        "PEER_REGION": "ap-southeast-1",
        "PEER_STREAM_NAME": "orders-inbound",
        "PEER_CREDENTIALS_PARAMETER": "/ddb-bridge/peer-keys",
        "PARKING_QUEUE_URL": "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/parking",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v != ""}


def test_relay_settings_read_every_variable_with_defaults():
    settings = RelaySettings.from_env(env())
    assert settings.region_tag == "cn-north-1" and settings.peer_region == "ap-southeast-1"
    assert settings.peer_keys is not None and settings.peer_keys.parameter_name == "/ddb-bridge/peer-keys"
    assert (settings.compress, settings.pack_bytes, settings.put_attempts) == (True, 256 * 1024, 8)
    assert RelaySettings.from_env(env(LOCAL_REGION_TAG="beijing")).region_tag == "beijing"


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"PEER_CREDENTIALS_PARAMETER": ""}, "PEER_CREDENTIALS_PARAMETER or PEER_CREDENTIALS_PARAMETER_PREFIX"),
        ({"PEER_REGION": "mars-1"}, "PEER_REGION"),
        ({"PEER_STREAM_NAME": "has spaces"}, "PEER_STREAM_NAME"),
        ({"LOCAL_REGION_TAG": "bad tag!"}, "LOCAL_REGION_TAG"),
        ({"RELAY_PACK_BYTES": "0"}, "RELAY_PACK_BYTES"),
        ({"TOMBSTONE_TABLE_NAME": ""}, "TOMBSTONE_TABLE_NAME"),
        ({"PEER_CREDENTIALS_SECRET": "s"}, "exclusive"),
        ({"MAX_CLOCK_SKEW_SECONDS": "0"}, "MAX_CLOCK_SKEW_SECONDS"),
        ({"LOG_KEYS": "encrypt"}, "LOG_KEYS"),
        ({"PEER_CREDENTIALS_PARAMETER_PREFIX": "/DDBReplication/TableCN/"}, "exclusive"),
    ],
)
def test_a_bad_relay_setting_names_the_variable(overrides, names):
    with pytest.raises(SettingsError, match=names):
        RelaySettings.from_env(env(**overrides))


def test_the_same_partition_needs_no_peer_keys_and_the_applier_needs_little():
    settings = RelaySettings.from_env(env(AWS_REGION="eu-west-1", PEER_CREDENTIALS_PARAMETER=""))
    assert settings.peer_keys is None
    applier = ApplierSettings.from_env(env())
    assert (applier.table, applier.tombstone_table, applier.region_tag) == ("orders", "orders-tombstones", "cn-north-1")
    assert (applier.max_clock_skew_seconds, applier.max_pack_bytes, applier.log_keys) == (300, 8 * 1024 * 1024, "plain")
    with pytest.raises(SettingsError, match="RELAY_MAX_PACK_BYTES"):
        ApplierSettings.from_env(env(RELAY_MAX_PACK_BYTES="1000"))
    sample = RelaySettings.from_env(
        env(PEER_CREDENTIALS_PARAMETER="", PEER_CREDENTIALS_PARAMETER_PREFIX="/DDBReplication/TableCN/")
    )
    assert sample.peer_keys is not None and sample.peer_keys.parameter_prefix == "/DDBReplication/TableCN/"
