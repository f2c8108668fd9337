"""The backfill's checkpoints: one per segment in the progress table, behind the segment's lease."""

from __future__ import annotations

import json
from typing import Any

from ...core.checkpoints import CheckpointStore
from .clients import Json


# ---- progress ----------------------------------------------------------------------------------------------
class ProgressStore:
    """Checkpoints per segment, and a lease so that one call at a time copies a segment."""

    def __init__(self, client: Any, table: str) -> None:
        self.store = CheckpointStore(client, table)

    def header(self, backfill_id: str, values: Json, now: float) -> Json:
        """Create the backfill's header on its first run; on a later run, the header it was created with."""
        fields = {"totalSegments": values["totalSegments"], "writeMode": values["writeMode"], "createdAt": int(now)}
        found, new = self.store.create(backfill_id, "plan", fields, now)
        return {"totalSegments": int(found["totalSegments"]), "writeMode": found["writeMode"], "new": new}

    def existing(self, backfill_id: str) -> Json | None:
        """The header of an earlier run of this backfill, if any."""
        found = self.store.read(backfill_id, "plan")
        if not found:
            return None
        return {"totalSegments": int(found["totalSegments"]), "writeMode": found["writeMode"]}

    def claim(self, backfill_id: str, segment: int, owner: str, now: float, lease_s: float) -> Json:
        """Take the segment's lease and return its checkpoint; RetryableError while another call holds it."""
        busy = (
            f"segment {segment} of backfill {backfill_id} is being copied by "
            "another call (a stopped execution's call still finishing); retrying"
        )
        return _checkpoint(self.store.claim(backfill_id, str(segment), owner, now, lease_s, busy=busy))

    def save(self, backfill_id: str, segment: int, owner: str, progress: Json) -> None:
        """Advance the checkpoint, only while this call holds the lease."""
        fields = {name: progress.get(name, 0) for name in ("copied", "skipped", "parked", "scanned", "pages")}
        fields["done"] = progress["done"]
        fields["lastEvaluatedKey"] = json.dumps(progress["lastEvaluatedKey"])
        self.store.save(backfill_id, str(segment), owner, fields)

    def release(self, backfill_id: str, segment: int, owner: str) -> None:
        """Give the lease back (the checkpoint stays)."""
        self.store.release(backfill_id, str(segment), owner)

    def segments(self, backfill_id: str, total: int) -> list[Json]:
        """Every segment's checkpoint (consistent reads)."""
        found = self.store.read_many(backfill_id, [str(s) for s in range(total)])
        return [_checkpoint(found.get(str(s), {})) for s in range(total)]


def _checkpoint(fields: Json) -> Json:
    lek = json.loads(fields["lastEvaluatedKey"]) if "lastEvaluatedKey" in fields else None
    return {
        "copied": int(fields.get("copied", 0)),
        "skipped": int(fields.get("skipped", 0)),
        "parked": int(fields.get("parked", 0)),
        "scanned": int(fields.get("scanned", 0)),
        "pages": int(fields.get("pages", 0)),
        "done": bool(fields.get("done", False)),
        "lastEvaluatedKey": lek,
    }
