"""moto in a process of its own: `python -m harness.moto_process PORT LAMBDA_HOST_URL`.

Started by `moto_server.start_process`. The server has the same fixes as the in-process one, and sends
every Lambda invocation of a bridged function to LAMBDA_HOST_URL, the process that deployed it
(`lambda_bridge.serve`). It stops when its standard input closes, so it never outlives its parent.
"""

from __future__ import annotations

import logging
import sys

from moto.server import ThreadedMotoServer

from . import lambda_bridge, moto_server


def main(argv: list[str]) -> None:
    """Serve on the port until standard input closes."""
    port, host_url = int(argv[0]), argv[1]
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto_server.point_at(port)
    moto_server.install_fixes()
    lambda_bridge.install(remote=host_url)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    sys.stdin.read()  # returns at EOF: the parent stopped us, or died
    server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
