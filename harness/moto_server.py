"""moto as a real HTTP server on loopback, and the process environment that points boto3 at it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from moto.server import ThreadedMotoServer

from . import moto_fixes, moto_patches, moto_speed

LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # local servers: never through a proxy
SOURCE_ACCOUNT = "123456789012"  # moto's default account: where the replicator runs
TARGET_ACCOUNT = "222222222222"  # reached only by STS AssumeRole


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


BASE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "AWS_XRAY_SDK_ENABLED": "false",
    "POWERTOOLS_SERVICE_NAME": "ddb-bridge-local",
    "POWERTOOLS_METRICS_NAMESPACE": "DdbBridgeLocal",
}


@dataclass
class LocalAws:
    """A running moto server and its endpoint."""

    endpoint: str
    port: int
    stopper: Callable[[], None]
    pid: int | None = None  # the server's own process (start_process), for benchmarks that read its CPU time

    def stop(self) -> None:
        """Stop the server."""
        self.stopper()

    def reset(self) -> None:
        """Forget every resource (between tests)."""
        LOOPBACK.open(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")).read()
        self.enable_step_functions()

    def enable_step_functions(self) -> None:
        """Make moto really execute state machines (the README lists the moto differences we met)."""
        body = json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode()
        req = urllib.request.Request(
            f"{self.endpoint}/moto-api/config", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        LOOPBACK.open(req).read()


def point_at(port: int) -> None:
    """Point this process's boto3 (and moto's Step Functions callbacks) at the server on `port`."""
    os.environ.update(BASE_ENV)
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    os.environ["MOTO_PORT"] = str(port)  # Step Functions tasks call back into this server
    os.environ["AWS_ACCOUNT_ID_ENDPOINT_MODE"] = "disabled"


def install_fixes() -> None:
    """Make moto behave like DynamoDB where it does not, for every test and script alike.

    Atomic transactions that roll back in place, ImportTable's text and binary handling, and items read
    without the cost of moto's generic serializer.
    """
    moto_fixes.install()
    moto_patches.apply()
    moto_speed.install()  # same JSON out; a Scan costs ~0.09 ms per item instead of ~0.25 (moto_speed.py)


def start(port: int | None = None) -> LocalAws:
    """Start moto on loopback in this process and point this process's boto3 at it."""
    port = port or free_port()
    point_at(port)
    install_fixes()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    aws = LocalAws(f"http://127.0.0.1:{port}", port, server.stop)
    aws.enable_step_functions()
    return aws


def start_process(port: int | None = None, *, timeout_s: float = 60.0, round_trip_ms: float = 0.0) -> LocalAws:
    """Start moto in a process of its own and point this process's boto3 at it.

    `round_trip_ms`: every AWS request waits that long first, as over a network (`moto_process`).

    The server gets its own interpreter and core, as AWS's service is not on the caller's CPU. Functions
    deployed through `harness.lambda_bridge` still run in this process, which serves their invocations to
    the server (`lambda_bridge.serve`).
    """
    from . import lambda_bridge

    port = port or free_port()
    host_url, stop_host = lambda_bridge.serve()
    point_at(port)
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen(
        [sys.executable, "-m", "harness.moto_process", str(port), host_url],
        cwd=root,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(root), str(root / "layers" / "bridge")]),
            "MOTO_ROUND_TRIP_MS": str(round_trip_ms),
        },
        stdin=subprocess.PIPE,  # the child stops when this pipe closes: it never outlives this process
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            LOOPBACK.open(f"{endpoint}/moto-api/data.json", timeout=5).read()
            break
        except (urllib.error.URLError, ConnectionError):
            if child.poll() is not None or time.monotonic() > deadline:
                child.kill()
                stop_host()
                raise RuntimeError(f"moto did not start in its own process (exit code {child.poll()})") from None
            time.sleep(0.1)

    def stop() -> None:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
        stop_host()

    aws = LocalAws(endpoint, port, stop, child.pid)
    aws.enable_step_functions()
    return aws


@contextmanager
def running(*, own_process: bool, round_trip_ms: float = 0.0) -> Iterator[LocalAws]:
    """A moto server for the block, in its own process (requests delayed by `round_trip_ms`) or in this one.

    Afterwards the environment points at whatever server it pointed at before.
    """
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "MOTO_PORT")}
    aws = start_process(round_trip_ms=round_trip_ms) if own_process else start()
    try:
        yield aws
    finally:
        aws.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
