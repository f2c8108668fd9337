"""The clients a backfill step works with."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...core.access import TargetAccess
from ...core.parking import ParkingLot

Json = dict[str, Any]


@dataclass
class BackfillClients:
    """The source table's account, the target side's access, the parking queue, and the clock (tests pass fakes)."""

    source: Any
    target: TargetAccess
    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    parking: ParkingLot | None = None
