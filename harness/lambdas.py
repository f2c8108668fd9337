"""Loads each function as Lambda would: its own cold start, its own environment, its own modules."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_LOCK = threading.Lock()
_ISOLATED_PREFIXES = ("ddb_bridge",)


class FakeContext:
    """The parts of LambdaContext that Powertools and our code read."""

    def __init__(self, function_name: str, timeout_ms: int = 60_000) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 1024
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._timeout_ms = timeout_ms

    def get_remaining_time_in_millis(self) -> int:
        """Time left in the invocation."""
        return self._timeout_ms


@contextmanager
def patched_env(env: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _purge() -> None:
    for name in list(sys.modules):
        if name.startswith(_ISOLATED_PREFIXES):
            del sys.modules[name]


class LocalFunction:
    """One deployed function: `functions/<name>/app.py` imported fresh with `env` (a cold start)."""

    def __init__(self, name: str, env: Mapping[str, str]) -> None:
        self.name = name
        self.env = dict(env)
        layer = str(ROOT / "layers" / "bridge")
        if layer not in sys.path:
            sys.path.insert(0, layer)
        with _LOCK, patched_env(self.env):
            _purge()  # a fresh copy of the layer: caches, sessions and settings of this function only
            spec = importlib.util.spec_from_file_location(
                f"fn_{name}_{uuid.uuid4().hex[:8]}", ROOT / "functions" / name / "app.py"
            )
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self.module: ModuleType = module
            self.layer: dict[str, ModuleType] = {
                n: m for n, m in sys.modules.items() if n.startswith(_ISOLATED_PREFIXES)
            }
            _purge()
        self.handler: Callable[[dict[str, Any], Any], Any] = module.lambda_handler
        self._invoking = threading.Lock()  # one invocation at a time per function (its event source's lane)

    def layer_module(self, name: str) -> ModuleType:
        """This function's own copy of a layer module, e.g. `ddb_bridge.table.replicator`."""
        return self.layer[name]

    def invoke(self, event: dict[str, Any]) -> Any:
        """Invoke the handler as the Lambda service would: one invocation of this function at a time.

        Other functions run theirs meanwhile (each function has its own copy of the layer).
        """
        with self._invoking:
            return self.handler(event, FakeContext(self.name))
