"""What crosses the border is bounded and checked; the peer's keys can live as the public sample keeps them.

Beijing <-> Singapore on moto over HTTP: a far-future stamp never crosses (it would win last-writer-wins
until its time came) and the writes after it do; the relay reads Singapore's keys from the two SSM
parameters the public China <-> Global sample uses, and picks up a rotation after an auth failure.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from ddb_bridge.core.access import PeerKeys
from ddb_bridge.core.errors import RetryableError
from ddb_bridge.core.settings import Env, PeerKeysSettings, SettingsError
from harness.bidirectional import TwoRegions
from harness.lww import canonical_item
from harness.world import canonical_key

TS, ORIGIN = "last_update_timestamp", "last_updater_region"
PREFIX = "/DDBReplication/TableCN/"


def stamped(pk: str, ts_ms: int, origin: str, note: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "note": {"S": note}, TS: {"N": str(ts_ms)}, ORIGIN: {"S": origin}}


def test_a_far_future_stamp_is_parked_never_sent_and_the_next_writes_replace_it(aws: Any) -> None:
    world = TwoRegions()
    now = int(time.time() * 1000)
    # GIVEN an item both regions hold
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped("doomed", now, world.a.tag, "v1"))
    world.drain()
    # WHEN a Beijing writer with a clock a day ahead writes two items (beyond MAX_CLOCK_SKEW_SECONDS=300)
    day = 86_400_000
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped("ahead", now + day, world.a.tag, "from tomorrow"))
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped("doomed", now + day, world.a.tag, "from tomorrow"))
    world.drain()
    # THEN neither crossed: each record is parked whole with the reason; Singapore keeps what it had
    parked = world.a.parked()
    assert sorted(m["reason"] for m in parked) == ["FutureVersion", "FutureVersion"]
    assert canonical_key({"pk": {"S": "ahead"}}) not in world.b.items()
    assert world.b.items()[canonical_key({"pk": {"S": "doomed"}})]["note"] == {"S": "v1"}
    # WHEN the clock is fixed and the items are written (and one deleted) again
    later = int(time.time() * 1000)
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped("ahead", later, world.a.tag, "fixed"))
    world.a.ddb.delete_item(TableName=world.a.table, Key={"pk": {"S": "doomed"}})
    world.drain()
    # THEN the new write replaced the far-future one in both regions (it is not put back), and the delete
    # of the far-future item crossed with its own time and removed Singapore's older copy
    for side in world.sides:
        items = {k: canonical_item(v) for k, v in side.items().items()}
        assert set(items) == {canonical_key({"pk": {"S": "ahead"}})}
        assert items[canonical_key({"pk": {"S": "ahead"}})]["note"] == {"S": "fixed"}
    assert sum(r.reverted for r in world.a.relay_reports) == 0


def test_the_relay_reads_the_peer_keys_from_the_samples_two_parameters_and_follows_a_rotation(aws: Any) -> None:
    # GIVEN relays whose peer keys are <prefix>AccessKey (String) and <prefix>SecretKey (SecureString)
    env = {"PEER_CREDENTIALS_PARAMETER": "", "PEER_CREDENTIALS_PARAMETER_PREFIX": PREFIX}
    world = TwoRegions(relay_env=env)
    world.put_sample_keys(world.a, PREFIX, world.b.access_key)
    world.put_sample_keys(world.b, PREFIX, world.a.access_key)
    now = int(time.time() * 1000)
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped("before", now, world.a.tag, "x"))
    world.drain()
    assert canonical_key({"pk": {"S": "before"}}) in world.b.items()
    assert world.a.relay_runtime().peer._key_id == world.b.access_key
    # WHEN the key is rotated in both parameters and the old one stops working
    world.revoked.add(world.b.access_key)
    world.put_sample_keys(world.a, PREFIX, "AKIAROTATED000000002")
    world.a.ddb.put_item(TableName=world.a.table, Item=stamped("after", now + 1, world.a.tag, "y"))
    world.drain()
    # THEN the relay read both parameters again at once and delivered with the new key
    assert canonical_key({"pk": {"S": "after"}}) in world.b.items()
    assert world.a.relay_runtime().peer._key_id == "AKIAROTATED000000002"
    assert sum(r.credential_refreshes for r in world.a.relay_reports) == 1


class Provider:
    """A Powertools-like provider holding parameters in memory, counting reads."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.reads: list[tuple[str, bool]] = []

    def get(self, name: str, **options: Any) -> Any:
        self.reads.append((name, bool(options.get("decrypt"))))
        return self.values[name]


def test_peer_key_sources_are_exclusive_and_a_half_written_pair_is_retried_not_parked() -> None:
    base = {"PEER_CREDENTIALS_PARAMETER_PREFIX": PREFIX}
    assert PeerKeysSettings.from_env(Env(base)) == PeerKeysSettings(None, None, 300, PREFIX)
    with pytest.raises(SettingsError, match="PEER_CREDENTIALS_PARAMETER and PEER_CREDENTIALS_PARAMETER_PREFIX"):
        PeerKeysSettings.from_env(Env({**base, "PEER_CREDENTIALS_PARAMETER": "/x"}))
    with pytest.raises(SettingsError, match="PEER_CREDENTIALS_SECRET and PEER_CREDENTIALS_PARAMETER_PREFIX"):
        PeerKeysSettings.from_env(Env({**base, "PEER_CREDENTIALS_SECRET": "peer"}))
    with pytest.raises(SettingsError, match="ending in /"):
        PeerKeysSettings.from_env(Env({"PEER_CREDENTIALS_PARAMETER_PREFIX": "/DDBReplication/TableCN"}))
    settings = PeerKeysSettings.from_env(Env(base))
    assert settings is not None
    provider = Provider({PREFIX + "AccessKey": "AKIAX", PREFIX + "SecretKey": "s3cr3t"})
    assert PeerKeys(settings, provider).read() == {"accessKeyId": "AKIAX", "secretAccessKey": "s3cr3t"}
    assert (PREFIX + "SecretKey", True) in provider.reads  # the SecureString is decrypted
    provider.values[PREFIX + "SecretKey"] = ""
    with pytest.raises(RetryableError) as error:
        PeerKeys(settings, provider).read()
    assert error.value.reason == "PeerKeysMalformed" and error.value.needs_operator
    assert "s3cr3t" not in str(error.value) and "AKIAX" not in str(error.value)
