"""The clients a verify step works with."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.access import TargetAccess

Json = dict[str, Any]


@dataclass
class VerifyClients:
    """The source table's account (DynamoDB, S3), the target side's access, and the clock (tests pass fakes)."""

    source: Any
    s3: Any
    target: TargetAccess
    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
