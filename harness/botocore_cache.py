"""Faster local runs: every botocore session of this process shares one data loader (read-only models).

Each new boto3/botocore session (an assumed-role session, peer keys, one per Lambda cold start) parses
botocore's endpoints and service models again, about 0.4 s each; in Lambda that happens once per cold
start, but the local harness starts dozens of sandboxes per test run. The data are the same for all of
them, so one cached loader serves every session. Nothing else changes.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

_lock = threading.Lock()
_installed = False


def install() -> None:
    """Share one loader per data path across all botocore sessions (once per process)."""
    global _installed
    with _lock:
        if _installed:
            return
        import botocore.session
        from botocore import loaders

        original = loaders.create_loader

        @cache
        def shared(search_path_string: str | None = None) -> Any:
            return original(search_path_string)

        botocore.session.create_loader = shared  # type: ignore[attr-defined]
        _installed = True
