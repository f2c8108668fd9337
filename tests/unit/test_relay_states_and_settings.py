"""Item states the bridge tells apart (digests, its own attribute, visible versions), side records, the relay's
filter per stamp mode, and the relay's and applier's settings."""

from __future__ import annotations

import base64

import pytest

from ddb_bridge.core.settings import SettingsError, VersionAttrs
from ddb_bridge.core.versions import Version
from ddb_bridge.relay.settings import ApplierSettings, RelaySettings
from ddb_bridge.relay.sidetable import LocalRecord, PeerRecord, record_key
from ddb_bridge.relay.states import Versions, digest
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


BRIDGE = Versions("bridge", VersionAttrs(), "ddbb_v")
APPLICATION = Versions("application", VersionAttrs(), "ddbb_v")


def test_the_bridge_attribute_names_a_version_only_while_the_item_is_what_was_written():
    # GIVEN an item written by replication with its version (client form), and the same item as the stream shows it
    item = {"pk": {"S": "a"}, "b": {"B": b"\x00"}, "n": {"N": "1.50"}}
    version = Version(1_796_180_270_000_001, "cn-north-1", 1100000000017454423010)
    written = BRIDGE.mark(item, version)
    shown = {**written, "b": {"B": "AA=="}, "n": {"N": "1.5"}}
    # THEN the attribute is verified in either form, and names the version
    assert BRIDGE.marked(written) == BRIDGE.marked(shown) == version
    # AND a local UpdateItem that keeps the attribute, or a copy under another key, is not replication's write
    assert BRIDGE.marked({**written, "n": {"N": "2"}}) is None
    assert BRIDGE.marked({**written, "pk": {"S": "copy"}}) is None
    assert BRIDGE.written_by_bridge(shown, None) == version
    assert BRIDGE.written_by_bridge(shown, shown) is None  # the attribute did not change: a local write
    # AND a local state is known by the relay's record of it, else unknown (None)
    local = LocalRecord(Version(5, "cn-north-1", 7), False, BRIDGE.content_digest(item))
    assert BRIDGE.visible(item, local) == Version(5, "cn-north-1", 7)
    assert BRIDGE.visible({**item, "x": {"S": "later"}}, local) is None
    # AND with application stamps the stamp comes first, and the bridge ignores stamps when it owns them
    stamped = {**item, "last_update_timestamp": {"N": "1796180270866"}, "last_updater_region": {"S": "x"}}
    assert APPLICATION.visible(stamped, LocalRecord()) == Version(1_796_180_270_866_000, "x")
    assert BRIDGE.visible(stamped, LocalRecord()) is None


def test_side_records_round_trip_and_keep_a_few_echo_markers():
    peer = PeerRecord()
    for n in range(12):
        peer = peer.deleting(Version(100 + n, "cn-north-1", n), Version(n, "cn-north-1"))
    peer = peer.removing_content("abc").removing_content("abc")
    again = PeerRecord.of(peer.item("k", 60))
    assert again == peer and again.version == Version(111, "cn-north-1", 11)
    assert len(again.removed) == 8 and again.removed[-1] == Version(11, "cn-north-1")
    assert again.tokens == ("abc@1", "abc@2")
    local = LocalRecord(Version(5, "ap-southeast-1", 3), True, None).removing(Version(4, "x")).consuming("abc@1")
    assert LocalRecord.of(local.item("k", 60)) == local and local.tombstone == Version(5, "ap-southeast-1", 3)
    assert record_key("L#", "k") != record_key("P#", "k")
    assert record_key("L#", "k" * 2000)["pk"]["S"].startswith("L#sha256:")


def record(new: dict | None = None, old: dict | None = None, name: str = "MODIFY") -> dict:
    body: dict = {"Keys": {"pk": {"S": "a"}}}
    if new is not None:
        body["NewImage"] = new
    if old is not None:
        body["OldImage"] = old
    return {"eventName": name, "dynamodb": body}


def test_the_relay_filter_drops_only_new_items_stamped_by_the_peer_with_application_stamps():
    keep = relay_filter("cn-north-1")
    local = record({"pk": {"S": "a"}, "last_updater_region": {"S": "cn-north-1"}})
    peer_new = record({"pk": {"S": "a"}, "last_updater_region": {"S": "ap-southeast-1"}}, name="INSERT")
    stamped_old = {"pk": {"S": "a"}, "last_updater_region": {"S": "ap-southeast-1"}}
    peer_update = record(
        {"pk": {"S": "a"}, "last_updater_region": {"S": "ap-southeast-1"}, "v": {"N": "2"}}, stamped_old
    )
    remove = record(None, stamped_old, "REMOVE")
    unstamped = record({"pk": {"S": "a"}})
    assert keep([local, peer_new, peer_update, remove, unstamped]) == [local, peer_update, remove, unstamped]
    assert not any(matches(p, peer_new) for p in relay_filter_patterns("cn-north-1"))
    # With bridge-owned stamps nothing is filtered: only code can tell replication's writes (the verified attribute)
    assert relay_filter_patterns("cn-north-1", stamp_mode="bridge") == []
    assert relay_filter("cn-north-1", stamp_mode="bridge")([peer_new]) == [peer_new]


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
    assert (settings.stamps.mode, settings.stamps.bridge_attr) == ("bridge", "ddbb_v")  # new deployments: bridge
    assert RelaySettings.from_env(env(LOCAL_REGION_TAG="beijing")).region_tag == "beijing"
    assert RelaySettings.from_env(env(STAMP_MODE="Application")).stamps.mode == "application"


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
        ({"STAMP_MODE": "clock"}, "STAMP_MODE"),
        ({"BRIDGE_VERSION_ATTR": "last_update_timestamp"}, "BRIDGE_VERSION_ATTR"),
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
