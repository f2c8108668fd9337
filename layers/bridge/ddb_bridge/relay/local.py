"""A region's own table as the bidirectional functions write it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import boto3

from ..core.clients import client_config
from ..core.settings import VersionAttrs
from ..table.tombstones import Tombstones
from .writer import MarkedWriter


class LocalTableSettings(Protocol):
    """What the bidirectional functions (stream_relay, relay_applier) know of their region's table."""

    @property
    def table(self) -> str:
        """The table's name."""

    @property
    def tombstone_table(self) -> str:
        """Its tombstone table's name."""

    @property
    def tombstone_days(self) -> int:
        """How long a tombstone lives."""

    @property
    def versions(self) -> VersionAttrs:
        """The version stamp's attributes."""

    @property
    def write_concurrency(self) -> int:
        """Concurrent write requests per batch."""


@dataclass
class LocalTable:
    """A region's own table as the bidirectional functions write it: built once per cold start."""

    dynamodb: Any
    table: str
    attrs: VersionAttrs
    tombstones: Tombstones
    concurrency: int

    @classmethod
    def of(cls, settings: LocalTableSettings) -> LocalTable:
        """The table, its tombstones and a client sized for the write concurrency."""
        return cls(
            boto3.client("dynamodb", config=client_config(pool=settings.write_concurrency + 2)),
            settings.table,
            settings.versions,
            Tombstones(settings.tombstone_table, settings.tombstone_days * 86400),
            settings.write_concurrency,
        )

    def writer(self) -> MarkedWriter:
        """A last-writer-wins writer with tombstones and echo markers (one per batch: it counts requests)."""
        return MarkedWriter(
            self.dynamodb, self.table, attrs=self.attrs, tombstones=self.tombstones, concurrency=self.concurrency
        )
