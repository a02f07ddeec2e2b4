"""A TCP service for lab namespaces: accepts connections and closes them, nothing more.

Run as `python -m netdoctor.lab.listener --address A --port P --pidfile F` (the lab starts it inside a
namespace it owns with `ip netns exec`); the pidfile is written once the socket listens.
"""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="netdoctor.lab.listener")
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pidfile", type=Path)
    args = parser.parse_args(argv)
    server = socket.create_server((args.address, args.port))
    if args.pidfile:
        args.pidfile.write_text(str(os.getpid()))
    while True:
        conn, _ = server.accept()
        conn.close()


if __name__ == "__main__":
    main()
