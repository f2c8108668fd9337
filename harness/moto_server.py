"""moto as a real HTTP server on loopback, and the process environment that points boto3 at it."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from dataclasses import dataclass

from moto.server import ThreadedMotoServer

from . import moto_fixes, moto_patches

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

    server: ThreadedMotoServer
    endpoint: str
    port: int

    def stop(self) -> None:
        """Stop the server."""
        self.server.stop()

    def reset(self) -> None:
        """Forget every resource (between tests)."""
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")).read()
        self.enable_step_functions()

    def enable_step_functions(self) -> None:
        """Make moto really execute state machines (LOCAL-AWS.md)."""
        body = json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode()
        req = urllib.request.Request(
            f"{self.endpoint}/moto-api/config", data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        urllib.request.urlopen(req).read()


def start(port: int | None = None) -> LocalAws:
    """Start moto on loopback and point this process's boto3 at it (environment variables)."""
    port = port or free_port()
    os.environ.update(BASE_ENV)
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    os.environ["MOTO_PORT"] = str(port)  # Step Functions tasks call back into this server
    os.environ["AWS_ACCOUNT_ID_ENDPOINT_MODE"] = "disabled"
    # Make moto behave like DynamoDB where it does not (atomic transactions that roll back in place,
    # ImportTable's text and binary handling) for every test and script alike, whatever runs first.
    moto_fixes.install()
    moto_patches.apply()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    aws = LocalAws(server, f"http://127.0.0.1:{port}", port)
    aws.enable_step_functions()
    return aws
