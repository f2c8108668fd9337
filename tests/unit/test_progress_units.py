"""table_replicator's progress record: which records of a batch it finished with, compactly and exactly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddb_bridge.core.settings import SettingsError
from ddb_bridge.table.progress import (
    SEQ_DIGITS,
    BatchProgress,
    batch_progress,
    decode_seqs,
    encode_seqs,
    sort_key,
)
from ddb_bridge.table.settings import ReplicatorSettings

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-12-01T00:00:00.000"


def record(seq: int, created: float = 1_796_000_000.5, arn: str | None = ARN) -> dict:
    out = {"eventName": "MODIFY", "dynamodb": {"SequenceNumber": str(seq), "ApproximateCreationDateTime": created}}
    if arn is not None:
        out["eventSourceARN"] = arn
    return out


@given(st.sets(st.integers(min_value=10**20, max_value=10**SEQ_DIGITS - 1), max_size=300))
def test_sequence_numbers_survive_the_encoding_exactly(seqs):
    assert decode_seqs(encode_seqs(seqs)) == sorted(seqs)


def test_a_batch_of_a_thousand_sequence_numbers_costs_at_most_a_few_bytes_each():
    import random

    rng = random.Random(7)
    consecutive = [4421584500000000017450439091 + i for i in range(1000)]
    far_apart, seq = [], 4421584500000000017450439091
    for _ in range(1000):
        seq += rng.randint(1, 10**9)
        far_apart.append(seq)
    assert len(encode_seqs(consecutive)) < 100
    assert len(encode_seqs(far_apart)) < 5 * 1000  # a DynamoDB item of about 5 KB at worst: 5 write units


def test_records_reported_as_failures_are_not_handled():
    batch = [record(100 + i) for i in range(5)]
    failed = {id(batch[1]), id(batch[3])}
    progress = batch_progress(batch, failed)
    assert progress is not None
    assert progress.stream_arn == ARN
    assert progress.seqs == [100, 102, 104]
    assert progress.newest_created_ms == 1_796_000_000_500


def test_nothing_is_recorded_for_a_batch_that_failed_whole_or_for_hand_made_events():
    batch = [record(1), record(2)]
    assert batch_progress(batch, {id(r) for r in batch}) is None
    assert batch_progress([record(1, arn=None)], set()) is None
    assert batch_progress([{"dynamodb": {"SequenceNumber": "not-a-number"}, "eventSourceARN": ARN}], set()) is None


def test_the_item_sorts_by_the_highest_handled_sequence_number_and_expires_after_the_stream():
    item = BatchProgress(ARN, [5, 3, 9], 1_000).item(now_ms=2_000_000)
    assert item["pk"] == {"S": f"stream#{ARN}"}
    assert item["sk"] == {"S": sort_key(9, 3)} and item["sk"]["S"].startswith("0" * (SEQ_DIGITS - 1) + "9#")
    assert decode_seqs(item["seqs"]["B"]) == [3, 5, 9]
    assert int(item["expiresAt"]["N"]) - 2_000 >= 24 * 3600  # longer than the stream keeps the records


def test_the_progress_table_setting_is_optional_and_validated():
    base = {"TARGET_TABLE_NAME": "orders", "AWS_REGION": "us-east-1", "PARKING_QUEUE_URL": "https://sqs/q"}
    assert ReplicatorSettings.from_env(base).progress_table is None
    assert ReplicatorSettings.from_env({**base, "PROGRESS_TABLE_NAME": "p-table"}).progress_table == "p-table"
    with pytest.raises(SettingsError, match="PROGRESS_TABLE_NAME"):
        ReplicatorSettings.from_env({**base, "PROGRESS_TABLE_NAME": "no spaces allowed"})
