"""Verify's checkpoints in the progress table, and the progress a caller reads while a verify runs.

One header per verify (`<id>#plan`: segments, repair, ignored attributes, start and end time) and one
checkpoint per phase, side and segment (`<id>#scan-source-3`, `<id>#recheck-target-0`, ...), each behind
its own lease (`core.checkpoints`). The checkpoints are the source of truth: the summary adds them up,
so a verify resumed with the same id counts every item once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..core.checkpoints import CheckpointStore
from .clients import Json

SIDES = ("source", "target")
PHASES = ("source", "target", "recheck", "repair", "done")
REAL = ("missing", "extra", "different")
CLASSES = (*REAL, "inFlight")
LEASE_MARGIN_S = 120


def part(stage: str, side: str, segment: int) -> str:
    """The checkpoint's part name: `scan-source-3`, `recheck-target-0`, `repair-source-1`."""
    return f"{stage}-{side}-{segment}"


class VerifyStore:
    """The header and the checkpoints of verifies, with a lease per checkpoint."""

    def __init__(self, client: Any, table: str) -> None:
        self.store = CheckpointStore(client, table)

    def header(self, verify_id: str, fields: Json, now: float) -> tuple[Json, bool]:
        """Create the verify's header on its first run; on a later run, the header it was created with."""
        stored = {**fields, "ignore": json.dumps(sorted(fields["ignore"]))}
        found, new = self.store.create(verify_id, "plan", stored, now)
        return {**found, "ignore": json.loads(found["ignore"])}, new

    def read_header(self, verify_id: str) -> Json | None:
        """The verify's header, if it exists."""
        found = self.store.read(verify_id, "plan")
        return {**found, "ignore": json.loads(found["ignore"])} if found else None

    def finish(self, verify_id: str, finished_ms: int) -> None:
        """Record the end of the verify (its summary was written)."""
        self.store.update(verify_id, "plan", {"finishedAt": finished_ms})

    def claim(self, verify_id: str, name: str, owner: str, now: float, lease_s: float) -> Json:
        """Take one checkpoint's lease and return it; RetryableError while another call holds it."""
        busy = f"{name} of verify {verify_id} is being worked on by another call (a stopped execution's call); retrying"
        return self.store.claim(verify_id, name, owner, now, lease_s, busy=busy)

    def save(self, verify_id: str, name: str, owner: str, fields: Json) -> None:
        """Advance one checkpoint, only while this call holds its lease."""
        self.store.save(verify_id, name, owner, fields)

    def release(self, verify_id: str, name: str, owner: str) -> None:
        """Give a lease back."""
        self.store.release(verify_id, name, owner)

    def read(self, verify_id: str, name: str) -> Json:
        """One checkpoint ({} when never written)."""
        return self.store.read(verify_id, name) or {}

    def all(self, verify_id: str, segments: int) -> dict[str, Json]:
        """Every checkpoint of the verify, by part name (absent when never written)."""
        stages = ("scan", "recheck", "repair")
        names = [part(stage, side, s) for stage in stages for side in SIDES for s in range(segments)]
        return self.store.read_many(verify_id, names)


@dataclass(frozen=True)
class VerifyProgress:
    """Where a verify stands, readable while it runs.

    `phase`: source (comparing the source's segments), target (looking for extras in the target's), recheck,
    repair, done. `segments_done` counts the segments whose current phase is finished (both sides, from the
    recheck on). Until the recheck, `missing`, `extra` and `different` count candidates (seen once, not yet
    confirmed); from the recheck on, confirmed differences only.
    """

    segments_total: int
    segments_done: int
    compared: int
    missing: int
    extra: int
    different: int
    in_flight: int
    phase: str
    settled: int = 0
    repaired: int = 0
    unrepaired: int = 0


def _sum(checkpoints: dict[str, Json], stage: str, field: str, segments: int, sides: tuple[str, ...] = SIDES) -> int:
    return sum(int(checkpoints.get(part(stage, side, s), {}).get(field, 0)) for side in sides for s in range(segments))


def done(checkpoints: dict[str, Json], stage: str, side: str, segment: int) -> bool:
    """Whether one side's segment finished a stage (a segment without candidates needs no recheck or repair)."""
    if stage != "scan" and not int(checkpoints.get(part("scan", side, segment), {}).get("parts", 0)):
        return True  # no candidates: nothing to recheck or repair
    return bool(checkpoints.get(part(stage, side, segment), {}).get("done", False))


def to_recheck(checkpoints: dict[str, Json], segments: int) -> list[Json]:
    """The sides' segments that found candidates: the only ones the recheck (and the repair) visit."""
    return [
        {"side": side, "segment": s}
        for side in SIDES
        for s in range(segments)
        if int(checkpoints.get(part("scan", side, s), {}).get("parts", 0))
    ]


def progress_of(header: Json, checkpoints: dict[str, Json]) -> VerifyProgress:
    """The progress of a verify from its header and checkpoints."""
    n = int(header["totalSegments"])
    stages = [("source", "scan", ("source",)), ("target", "scan", ("target",)), ("recheck", "recheck", SIDES)]
    if header.get("repair"):
        stages.append(("repair", "repair", SIDES))
    phase, segments_done = "done", n
    if not header.get("finishedAt"):
        for name, stage, sides in stages:
            finished = sum(1 for s in range(n) if all(done(checkpoints, stage, side, s) for side in sides))
            if finished < n:
                phase, segments_done = name, finished
                break
        else:
            phase = stages[-1][0]  # every segment finished: the report is being written
    scanned = _sum(checkpoints, "scan", "scanned", n, ("source",))
    compared = scanned + _sum(checkpoints, "scan", "candidates", n, ("target",))
    if phase in ("source", "target"):
        counts = {c: _sum(checkpoints, "scan", c, n) for c in REAL}
        in_flight = 0
    else:
        counts = {c: _sum(checkpoints, "recheck", c, n) for c in REAL}
        in_flight = _sum(checkpoints, "recheck", "inFlight", n)
    return VerifyProgress(
        segments_total=n,
        segments_done=segments_done,
        compared=compared,
        missing=counts["missing"],
        extra=counts["extra"],
        different=counts["different"],
        in_flight=in_flight,
        phase=phase,
        settled=_sum(checkpoints, "recheck", "settled", n),
        repaired=_sum(checkpoints, "repair", "repaired", n),
        unrepaired=_sum(checkpoints, "repair", "unrepaired", n),
    )


def read_progress(dynamodb_client: Any, table: str, verify_id: str) -> VerifyProgress:
    """The progress of one verify (consistent reads of its checkpoints).

    Before the workflow has planned the verify (right after StartExecution), it is phase `source` with zeros.
    """
    store = VerifyStore(dynamodb_client, table)
    header = store.read_header(verify_id)
    if header is None:
        return VerifyProgress(0, 0, 0, 0, 0, 0, 0, "source")
    return progress_of(header, store.all(verify_id, int(header["totalSegments"])))
