"""PutRecords to the peer: only failed records are sent again; an authentication failure re-reads the keys."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from ddb_bridge.core.access import PeerKeys
from ddb_bridge.core.settings import PeerKeysSettings
from ddb_bridge.relay.packs import OutRecord
from ddb_bridge.relay.peer import PeerStream


class FakeKinesis:
    """Refuses the records whose data is in `refuse` (once each), or raises `error` on the next calls."""

    def __init__(self, refuse: set[bytes] | None = None, error: str | None = None, errors: int = 0) -> None:
        self.refuse = set(refuse or ())
        self.error = error
        self.errors = errors
        self.calls: list[list[bytes]] = []

    def put_records(self, **kwargs: Any) -> dict[str, Any]:
        data = [r["Data"] for r in kwargs["Records"]]
        self.calls.append(data)
        if self.error and self.errors:
            self.errors -= 1
            raise ClientError({"Error": {"Code": self.error, "Message": "no"}}, "PutRecords")
        out = []
        for d in data:
            if d in self.refuse:
                self.refuse.discard(d)
                out.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"})
            else:
                out.append({"SequenceNumber": "1", "ShardId": "shardId-0"})
        return {"FailedRecordCount": sum("ErrorCode" in o for o in out), "Records": out}


def record(i: int, size: int = 10) -> OutRecord:
    return OutRecord(bytes([i % 256]) * size, f"{i:032x}", str(i), [f"key{i}"], size)


def stream(client: FakeKinesis, keys: PeerKeys | None = None, built: list[str] | None = None) -> PeerStream:
    def factory(session, region, config):
        if built is not None:
            built.append(session.get_credentials().access_key)
        return client

    return PeerStream(region="ap-southeast-1", stream="s", keys=keys, config=None, client_factory=factory,
                      sleep=lambda s: None)  # fmt: skip


def test_only_the_failed_records_are_sent_again():
    # GIVEN Kinesis refusing 2 of 5 records
    records = [record(i) for i in range(5)]
    client = FakeKinesis(refuse={records[1].data, records[3].data})
    # WHEN they are put
    outcome = stream(client).put(records, attempts=3)
    # THEN the second call carried exactly the two refused records, and all arrived
    assert client.calls == [[r.data for r in records], [records[1].data, records[3].data]]
    assert outcome.sent == {0, 1, 2, 3, 4} and not outcome.failed
    assert outcome.retried_records == 2


def test_what_still_fails_after_every_attempt_is_reported_not_raised():
    records = [record(i) for i in range(3)]

    class Stubborn(FakeKinesis):
        def put_records(self, **kwargs):
            self.refuse.add(records[2].data)
            return super().put_records(**kwargs)

    outcome = stream(Stubborn()).put(records, attempts=4)
    assert outcome.sent == {0, 1}
    assert list(outcome.failed) == [2] and outcome.failed[2].reason == "ProvisionedThroughputExceededException"


def test_calls_respect_500_records_and_a_record_over_1_mib_is_rejected_without_a_call():
    records = [record(i) for i in range(1200)] + [record(9999, size=1024 * 1024 + 1)]
    client = FakeKinesis()
    outcome = stream(client).put(records, attempts=1)
    assert [len(c) for c in client.calls] == [500, 500, 200]
    assert list(outcome.rejected) == [1200] and outcome.rejected[1200].reason == "RecordTooLarge"


class Provider:
    """Powertools' provider interface: `get(name, max_age, transform, force_fetch, ...)`."""

    def __init__(self) -> None:
        self.value = {"accessKeyId": "AKIAOLD", "secretAccessKey": "s1"}
        self.cached: dict[str, Any] | None = None
        self.reads = 0

    def get(self, name: str, **options: Any) -> dict[str, Any]:
        if self.cached is None or options.get("force_fetch"):
            self.reads += 1
            self.cached = dict(self.value)
        return self.cached


def test_an_auth_failure_re_reads_the_keys_and_retries_with_the_new_ones():
    # GIVEN keys cached from SSM, then rotated there, the old key now refused
    provider = Provider()
    keys = PeerKeys(PeerKeysSettings(None, "/peer/keys", 300), provider=provider)
    client = FakeKinesis(error="UnrecognizedClientException", errors=0)
    built: list[str] = []
    peer = stream(client, keys, built)
    assert peer.put([record(1)], attempts=3).sent == {0}
    provider.value = {"accessKeyId": "AKIANEW", "secretAccessKey": "s2"}
    client.errors = 1
    # WHEN a put fails authentication
    outcome = peer.put([record(2)], attempts=3)
    # THEN the keys were read again at once (not after the cache's 5 minutes) and the retry succeeded
    assert outcome.sent == {0} and outcome.credential_refreshes == 1
    assert built == ["AKIAOLD", "AKIANEW"]
    assert provider.reads == 2
