"""The backfill (statemachine/backfill.asl.json): copy a table into an existing table, segment by segment.

A Map runs one loop per parallel-scan segment; each Lambda call copies pages of its segment until its
time budget is spent and returns where it stopped (`LastEvaluatedKey`), so every call is bounded and
the copy resumes. A checkpoint per segment (progress table) is the source of truth: it advances only
after a page is written, under a lease that keeps two calls off one segment, so a stopped backfill
started again with the same `backfillId` copies each item once and misses none.

Two ways to write (docs/design.md#full-load-handover):
- `overwrite`: BatchWriteItem, 25 per request, UnprocessedItems retried with backoff and jitter
  (`apply.TableWriter`). Only when nothing else writes the target (live replication not running).
- `live`: while live replication runs. Each item is a TransactWriteItems of a ConditionCheck on the
  tombstone table and a conditional Put, so the backfill never overwrites a newer live write nor
  resurrects a live delete. `lww` replication compares versions; `ordered` replication (no versions)
  only fills keys that the target does not hold and that no live delete removed.

The rate is a share of the tables' throughput: provisioned capacity, or for on-demand tables the
table's warm throughput (capped by its on-demand maximum), split evenly between the segments.
"""
