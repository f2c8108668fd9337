"""moto in a process of its own: `python -m harness.moto_process PORT LAMBDA_HOST_URL`.

Started by `moto_server.start_process`. The server has the same fixes as the in-process one, and sends
every Lambda invocation of a bridged function to LAMBDA_HOST_URL, the process that deployed it
(`lambda_bridge.serve`). It stops when its standard input closes, so it never outlives its parent.

`MOTO_ROUND_TRIP_MS` (default 0) holds every AWS request that long before moto handles it, on the
request's own thread: a network round trip, which concurrent requests overlap as they do on AWS, and
which costs no CPU (benchmarks that want AWS's latency beside moto's CPU costs).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.server import ThreadedMotoServer

from . import lambda_bridge, moto_server


def main(argv: list[str]) -> None:
    """Serve on the port until standard input closes."""
    port, host_url = int(argv[0]), argv[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto_server.point_at(port)
    moto_server.install_fixes()
    lambda_bridge.install(remote=host_url)
    round_trip = float(os.environ.get("MOTO_ROUND_TRIP_MS", "0")) / 1000
    if round_trip > 0:
        dispatch = DomainDispatcherApplication.__call__

        def delayed(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
            if not environ.get("PATH_INFO", "").startswith("/moto-api"):
                time.sleep(round_trip)
            return dispatch(self, environ, start_response)

        DomainDispatcherApplication.__call__ = delayed  # type: ignore[method-assign]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    sys.stdin.read()  # returns at EOF: the parent stopped us, or died
    server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
