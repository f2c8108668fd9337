"""Lets Step Functions in moto run our functions: moto's Lambda invoke, dispatched to local handlers.

moto cannot run Lambda code (it needs Docker), but ThreadedMotoServer runs in this process, so the
bridge patches `moto.awslambda.models.LambdaBackend.invoke`: an invoke of a function deployed through
the bridge runs its handler here, with Lambda's response contract (payload, or an `Unhandled` function
error whose `errorType` is the exception's class name, as the Python runtime reports it). Each
concurrent invocation gets its own sandbox (a `LocalFunction`: own cold start, own layer modules),
the way Lambda scales out, so the inline and distributed Map states really run in parallel. When moto
runs in a process of its own (`moto_server.start_process`), its patched invoke posts each invocation
to the process that deployed the function, which runs it the same way (`serve`).

It also turns off moto's own delivery from DynamoDB streams to event source mappings: moto invokes
even a *disabled* mapping on every write and then empties the shard, so a mapping could never be
created (the README lists the moto differences we met). With the bridge, mappings are control-plane
objects only (create, list,
enable) and `harness.streams.StreamPoller` does the delivery, started when the mapping is enabled.
"""

from __future__ import annotations

import io
import json
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

from .lambdas import FakeContext, LocalFunction
from .moto_server import LOOPBACK

DEFAULT_TIMEOUT_S = 900
_LAMBDA_ROLE = "ddb-bridge-local-lambda"


class _Context(FakeContext):
    """A Lambda context whose remaining time really runs down."""

    def __init__(self, function_name: str, timeout_s: float) -> None:
        super().__init__(function_name, int(timeout_s * 1000))
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        """Time left before the function's timeout."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class _Pool:
    """The sandboxes of one function: an idle one is reused, a new one is a cold start."""

    name: str
    env: dict[str, str]
    timeout_s: float
    idle: list[LocalFunction] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cold_starts: int = 0
    setup: list[Callable[[LocalFunction], None]] = field(default_factory=list)

    def new(self) -> LocalFunction:
        return LocalFunction(self.name, self.env)

    def take(self) -> LocalFunction:
        with self.lock:
            if self.idle:
                return self.idle.pop()
            self.cold_starts += 1
        sandbox = self.new()
        for configure in self.setup:
            configure(sandbox)
        return sandbox

    def give_back(self, sandbox: LocalFunction) -> None:
        with self.lock:
            self.idle.append(sandbox)


class LambdaBridge:
    """Functions deployed in moto whose invocations run locally; counts every invocation."""

    def __init__(self) -> None:
        self._pools: dict[str, _Pool] = {}
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)
        self.invocations: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.hooks: dict[str, Callable[[dict[str, Any]], None]] = {}  # tests: run before a handler

    def deploy(
        self,
        name: str,
        env: Mapping[str, str],
        *,
        function_name: str | None = None,
        warm: int = 1,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        lambda_client: Any | None = None,
    ) -> str:
        """Create `functions/<name>` in moto (a placeholder zip) and route its invocations here; returns the ARN."""
        function_name = function_name or name
        pool = _Pool(name, dict(env), timeout_s)
        for _ in range(warm):
            pool.give_back(pool.new())
            pool.cold_starts += 1
        with self._lock:
            self._pools[function_name] = pool
        client = lambda_client or boto3.client("lambda")
        try:
            return str(client.get_function(FunctionName=function_name)["Configuration"]["FunctionArn"])
        except client.exceptions.ResourceNotFoundException:
            pass
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            archive.writestr("app.py", "# runs in the local harness\n")
        created = client.create_function(
            FunctionName=function_name,
            Runtime="python3.11",
            Role=_role_arn(),
            Handler="app.lambda_handler",
            Code={"ZipFile": buf.getvalue()},
            Timeout=int(min(timeout_s, 900)),
            Environment={"Variables": {k: str(v) for k, v in env.items()}},
        )
        return str(created["FunctionArn"])

    def configure(self, function_name: str, setup: Callable[[LocalFunction], None]) -> None:
        """Apply `setup` to every sandbox of the function, now and at each later cold start (tests)."""
        pool = self._pools[function_name]
        with pool.lock:
            pool.setup.append(setup)
            for sandbox in pool.idle:
                setup(sandbox)

    def handles(self, function_name: str) -> bool:
        """True when invocations of this function run here."""
        return function_name in self._pools

    def invoke(self, function_name: str, event: Any) -> tuple[bytes, bool]:
        """Run one invocation; returns (payload, errored) as the Lambda service would."""
        pool = self._pools[function_name]
        with self._lock:
            self._in_flight += 1
            self.invocations[function_name] += 1
        sandbox = pool.take()
        try:
            hook = self.hooks.get(function_name)
            if hook is not None:
                hook(event)
            result = sandbox.handler(event, _Context(sandbox.name, pool.timeout_s))
            return json.dumps(result, default=str).encode(), False
        except Exception as exc:  # noqa: BLE001 - reported as Lambda reports an unhandled function error
            with self._lock:
                self.errors[function_name] += 1
            payload = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "requestId": "local",
                "stackTrace": traceback.format_tb(exc.__traceback__)[-5:],
            }
            return json.dumps(payload).encode(), True
        finally:
            pool.give_back(sandbox)
            with self._lock:
                self._in_flight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Block until no invocation is running (an execution stopped mid-call lets its call finish)."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self._in_flight} invocations still running")
                self._idle.wait(left)

    def cold_starts(self, function_name: str) -> int:
        """How many sandboxes the function has had."""
        return self._pools[function_name].cold_starts


def _role_arn() -> str:
    iam = boto3.client("iam")
    try:
        return str(iam.get_role(RoleName=_LAMBDA_ROLE)["Role"]["Arn"])
    except iam.exceptions.NoSuchEntityException:
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "lambda.amazonaws.com"}}
            ],
        }
        return str(iam.create_role(RoleName=_LAMBDA_ROLE, AssumeRolePolicyDocument=json.dumps(policy))["Role"]["Arn"])


BRIDGE = LambdaBridge()
_installed = False
_install_lock = threading.Lock()
_moto_originals: dict[str, Any] = {}


def _remote_invoke(host_url: str, name: str, event: Any) -> tuple[bytes, bool] | None:
    """Run an invocation in the process that deployed the function (`serve`); None if it has no such function."""
    request = urllib.request.Request(
        f"{host_url}/invoke/{urllib.parse.quote(name)}",
        data=json.dumps(event).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with LOOPBACK.open(request) as response:
            return response.read(), response.headers.get("X-Function-Error") == "Unhandled"
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def install(remote: str | None = None) -> LambdaBridge:
    """Patch moto (once per process): bridged invokes run here, or where `remote` serves them.

    `remote` is set when moto runs in a process of its own (`moto_server.start_process`). Either way,
    moto's own stream -> mapping delivery is off.
    """
    global _installed
    with _install_lock:
        if _installed:
            return BRIDGE
        from moto.awslambda import models

        original = models.LambdaBackend.invoke
        _moto_originals["send_dynamodb_items"] = models.LambdaBackend.send_dynamodb_items

        def invoke(
            self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
        ) -> Any:
            name = function_name.rsplit(":function:", 1)[-1].split(":", 1)[0]
            if remote is None and not BRIDGE.handles(name):
                return original(self, function_name, qualifier, body, headers, response_headers)
            self.get_function(function_name, qualifier)  # ResourceNotFound as AWS would say it
            event = json.loads(body) if body else {}
            answer = BRIDGE.invoke(name, event) if remote is None else _remote_invoke(remote, name, event)
            if answer is None:
                return original(self, function_name, qualifier, body, headers, response_headers)
            payload, errored = answer
            if errored:
                response_headers["x-amz-function-error"] = "Unhandled"
            response_headers["x-amz-executed-version"] = "$LATEST"
            response_headers["Content-Length"] = str(len(payload))
            return payload

        models.LambdaBackend.invoke = invoke  # type: ignore[method-assign]
        models.LambdaBackend.send_dynamodb_items = lambda self, *args, **kwargs: None  # type: ignore[method-assign]
        _installed = True
        return BRIDGE


class _InvokeHandler(BaseHTTPRequestHandler):
    """POST /invoke/<function>: the event in, the payload out (X-Function-Error: Unhandled on an error)."""

    def do_POST(self) -> None:
        name = urllib.parse.unquote(self.path.removeprefix("/invoke/"))
        event = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if not self.path.startswith("/invoke/") or not BRIDGE.handles(name):
            self.send_error(404, f"no bridged function {name!r} here")
            return
        payload, errored = BRIDGE.invoke(name, event)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if errored:
            self.send_header("X-Function-Error", "Unhandled")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: invocations are counted by the bridge."""


def serve() -> tuple[str, Callable[[], None]]:
    """Serve this process's bridged functions to a moto running elsewhere; returns (url, stop)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _InvokeHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="lambda-host", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_address[1]}", stop


@contextmanager
def moto_stream_delivery() -> Iterator[None]:
    """Temporarily restore moto's own stream -> mapping delivery (only to show what it does)."""
    from moto.awslambda import models

    patched = models.LambdaBackend.send_dynamodb_items
    models.LambdaBackend.send_dynamodb_items = _moto_originals["send_dynamodb_items"]  # type: ignore[method-assign]
    try:
        yield
    finally:
        models.LambdaBackend.send_dynamodb_items = patched  # type: ignore[method-assign]
