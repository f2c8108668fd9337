"""Drain: has table_replicator finished with every stream record created up to a cut time? Wait until it has.

Lambda exposes no checkpoint, an idle event source emits no IteratorAge, and a stream's tip has no sequence
number until records exist, so drain asks the stream itself. It reads every shard from its checkpoint (or
TRIM_HORIZON) to the tip and ticks each record created up to the cut off against the sequence numbers the
replicator recorded as handled (`ddb_bridge.table.progress`). It is done when no record up to the cut is
left and every shard has been read past the cut: a record created after it, a closed shard's end, or the
open tip, read again once the cut is `settle` seconds old (DynamoDB writes stream records in near real time).
A successful drain saves the position it proved per shard, so the next drain starts there.
Design and limits: docs/runbook.md, "How drain works".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ..table.progress import read_progress

DRAIN_PREFIX = "drain#"
CHECKPOINT = "checkpoint"
FREEZE = "freeze"
TIP_READS = 3  # an open shard's tip: this many empty reads in a row (an empty page may sit before records)
MAX_READS_PER_SHARD = 200  # per pass, so progress shows while a long backlog is read


@dataclass
class DrainState:
    """Where a drain stands after one pass."""

    cut_ms: int
    seen: int = 0
    pending: dict[int, int] = field(default_factory=dict)  # sequence number -> creation time (ms)
    shards: int = 0
    shards_done: int = 0
    shards_read: int = 0  # read to the tip (or past the cut) at least once

    @property
    def confirmed(self) -> int:
        """Records up to the cut the replicator has finished with."""
        return self.seen - len(self.pending)

    @property
    def oldest_pending_ms(self) -> int | None:
        """Creation time of the oldest record not yet finished with."""
        return min(self.pending.values()) if self.pending else None

    def lag_ms(self, now_ms: int) -> int:
        """Age of the oldest record not yet finished with; 0 when none is left."""
        oldest = self.oldest_pending_ms
        return 0 if oldest is None else max(0, now_ms - oldest)

    @property
    def done(self) -> bool:
        """Nothing up to the cut is left, and every shard was read past it."""
        return not self.pending and self.shards_done == self.shards


@dataclass
class _Shard:
    shard_id: str
    after: str | None  # the last sequence number read (or the checkpoint); None = from TRIM_HORIZON
    iterator: str | None = None
    done: bool = False
    read_to_tip: bool = False
    empty_reads: int = 0
    last_at_or_before_cut: str | None = None


class DrainTimeout(Exception):
    """The replicator did not finish with every record up to the cut in time."""

    def __init__(self, state: DrainState, seconds: float) -> None:
        super().__init__(f"not drained after {seconds:.0f} s: {len(state.pending)} records up to the cut are left")
        self.state = state


class StreamCheck:
    """One stream, one cut time: read it to the tip and tick records off against the replicator's progress."""

    def __init__(
        self,
        streams: Any,
        dynamodb: Any,
        progress_table: str,
        stream_arn: str,
        cut_ms: int,
        *,
        settle_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.streams = streams
        self.dynamodb = dynamodb
        self.table = progress_table
        self.stream_arn = stream_arn
        self.cut_ms = cut_ms
        self.settle_s = settle_s
        self.clock = clock
        self.state = DrainState(cut_ms)
        self._checkpoint = load_checkpoint(dynamodb, progress_table, stream_arn)
        self._shards: dict[str, _Shard] = {}
        self._handled: set[int] = set()
        self._items_seen: set[tuple[int, int]] = set()
        self._floor: int | None = None

    # ---- the stream side --------------------------------------------------------------------------------
    def _list_shards(self) -> None:
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn}
        while True:
            desc = self.streams.describe_stream(**kwargs)["StreamDescription"]
            for shard in desc.get("Shards", []):
                sid = shard["ShardId"]
                if sid not in self._shards:
                    self._shards[sid] = _Shard(sid, self._checkpoint.get(sid))
            if not desc.get("LastEvaluatedShardId"):
                return
            kwargs["ExclusiveStartShardId"] = desc["LastEvaluatedShardId"]

    def _iterator(self, shard: _Shard) -> str:
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard.shard_id}
        if shard.after is None:
            return str(self.streams.get_shard_iterator(**kwargs, ShardIteratorType="TRIM_HORIZON")["ShardIterator"])
        try:
            return str(
                self.streams.get_shard_iterator(
                    **kwargs, ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=shard.after
                )["ShardIterator"]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TrimmedDataAccessException":
                raise
            shard.after = None  # the checkpoint aged out of the stream: everything left is after the trim horizon
            return self._iterator(shard)

    def _read(self, shard: _Shard) -> None:
        for _ in range(MAX_READS_PER_SHARD):
            if shard.iterator is None:
                shard.iterator = self._iterator(shard)
            try:
                page = self.streams.get_records(ShardIterator=shard.iterator, Limit=1000)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ExpiredIteratorException":
                    raise
                shard.iterator = None  # iterators last 15 minutes: start again after the last record read
                continue
            records = page.get("Records", [])
            for record in records:
                body = record["dynamodb"]
                seq = str(body["SequenceNumber"])
                shard.after = seq
                created = body["ApproximateCreationDateTime"]
                created_ms = int((created.timestamp() if hasattr(created, "timestamp") else float(created)) * 1000)
                if created_ms > self.cut_ms:  # records of a shard come in creation order: the rest is later
                    shard.done = True
                    return
                shard.last_at_or_before_cut = seq
                number = int(seq)
                self._floor = number if self._floor is None else min(self._floor, number)
                self.state.seen += 1
                if number not in self._handled:
                    self.state.pending[number] = created_ms
            shard.iterator = page.get("NextShardIterator")
            if shard.iterator is None:  # a closed shard, read to its end
                shard.done = True
                return
            shard.empty_reads = 0 if records else shard.empty_reads + 1
            if shard.empty_reads >= TIP_READS:
                shard.empty_reads = 0
                shard.read_to_tip = True
                shard.done = self.clock() * 1000 >= self.cut_ms + self.settle_s * 1000
                return

    # ---- the progress side ------------------------------------------------------------------------------
    def _tick_off(self) -> None:
        if self._floor is None or not self.state.pending:
            return
        for item in read_progress(self.dynamodb, self.table, self.stream_arn, from_seq=self._floor):
            key = (item.highest, item.lowest)
            if key in self._items_seen:
                continue
            self._items_seen.add(key)
            for seq in item.seqs:
                if self.state.pending.pop(seq, None) is None:
                    self._handled.add(seq)  # a record this drain has not read yet

    def poll(self) -> DrainState:
        """One pass: read what is new in every shard, tick off what the replicator has finished with."""
        self._list_shards()
        for shard in self._shards.values():
            if not shard.done:
                self._read(shard)
        self._tick_off()
        self.state.shards = len(self._shards)
        self.state.shards_done = sum(s.done for s in self._shards.values())
        self.state.shards_read = sum(s.done or s.read_to_tip for s in self._shards.values())
        return self.state

    def measure(self, *, timeout_s: float = 300.0) -> DrainState:
        """Read every shard to its tip once (no waiting for the replicator): what is left, and its age."""
        deadline = self.clock() + timeout_s
        while True:
            state = self.poll()
            if state.shards_read == state.shards:
                return state
            if self.clock() > deadline:
                raise DrainTimeout(state, timeout_s)

    def save_checkpoint(self, now_ms: int) -> None:
        """Remember, per shard, the last record up to the cut: every record before it is finished with."""
        assert self.state.done, "only a finished drain proves a checkpoint"
        shards = dict(self._checkpoint)
        shards.update({s.shard_id: s.last_at_or_before_cut for s in self._shards.values() if s.last_at_or_before_cut})
        self.dynamodb.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": drain_key(self.stream_arn)},
                "sk": {"S": CHECKPOINT},
                "shards": {"M": {sid: {"S": seq} for sid, seq in shards.items()}},
                "cutMs": {"N": str(self.cut_ms)},
                "drainedAtMs": {"N": str(now_ms)},
            },
        )


def drain_key(stream_arn: str) -> str:
    """The partition key of a stream's drain records (checkpoint, freeze time)."""
    return f"{DRAIN_PREFIX}{stream_arn}"


def load_checkpoint(dynamodb: Any, table: str, stream_arn: str) -> dict[str, str]:
    """The last proven position per shard, {} when no drain has finished yet."""
    item = dynamodb.get_item(
        TableName=table, Key={"pk": {"S": drain_key(stream_arn)}, "sk": {"S": CHECKPOINT}}, ConsistentRead=True
    ).get("Item")
    if not item:
        return {}
    return {sid: value["S"] for sid, value in item.get("shards", {}).get("M", {}).items()}


def record_freeze(dynamodb: Any, table: str, stream_arn: str, *, frozen_at_ms: int, drained_at_ms: int) -> None:
    """Remember when writes were frozen (for cutover-check), once everything written before it is applied."""
    dynamodb.put_item(
        TableName=table,
        Item={
            "pk": {"S": drain_key(stream_arn)},
            "sk": {"S": FREEZE},
            "frozenAtMs": {"N": str(frozen_at_ms)},
            "drainedAtMs": {"N": str(drained_at_ms)},
        },
    )


def recorded_freeze(dynamodb: Any, table: str, stream_arn: str) -> tuple[int, int] | None:
    """(frozen at, drained at) in epoch ms, as the last `drain --frozen-at` recorded them; None if never."""
    item = dynamodb.get_item(
        TableName=table, Key={"pk": {"S": drain_key(stream_arn)}, "sk": {"S": FREEZE}}, ConsistentRead=True
    ).get("Item")
    if not item:
        return None
    return int(item["frozenAtMs"]["N"]), int(item["drainedAtMs"]["N"])


def drain(
    check: StreamCheck,
    *,
    timeout_s: float,
    poll_s: float = 2.0,
    on_pass: Callable[[DrainState], None] = lambda state: None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> DrainState:
    """Poll until drained (then save the checkpoint); raises DrainTimeout after `timeout_s`."""
    started = clock()
    while True:
        state = check.poll()
        on_pass(state)
        if state.done:
            check.save_checkpoint(int(clock() * 1000))
            return state
        if clock() - started >= timeout_s:
            raise DrainTimeout(state, timeout_s)
        sleep(poll_s)
