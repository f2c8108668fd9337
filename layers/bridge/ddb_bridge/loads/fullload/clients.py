"""The clients a full-load step works with."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...core.access import TargetAccess

Json = dict[str, Any]


@dataclass
class FullLoadClients:
    """Clients of the source account and region, and the target side's access."""

    dynamodb: Any
    lambda_: Any
    s3: Any
    target: TargetAccess
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000)
