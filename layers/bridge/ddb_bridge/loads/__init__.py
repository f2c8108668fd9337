"""Copying what a table already holds: the full load (export -> import) and the backfill (parallel scan)."""
