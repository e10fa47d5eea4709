"""Start the API for `bench.http_cycle` in two ways uvicorn's own CLI does not offer.

    python -m bench.serve nodelay <uvicorn CLI arguments>
    python -m bench.serve reuseport HOST PORT WORKERS

`nodelay`: uvicorn's CLI, but with its listening socket re-created so that accepted connections
get TCP_NODELAY. For `--workers` > 1 uvicorn 0.54 binds the socket itself
(`Config.bind_socket`) with proto 0, and asyncio only sets TCP_NODELAY on accepted sockets whose
proto is IPPROTO_TCP, so every keep-alive response waits ~40 ms for the client's delayed ACK
(https://github.com/Kludex/uvicorn/issues/3149). Re-created from its file descriptor, the socket
reports proto 6, and the spawned workers receive it with that proto.

`reuseport`: WORKERS single-process uvicorn servers, each listening on its own socket bound with
SO_REUSEPORT (and proto 6), so the kernel spreads new connections over the processes. With one
shared listening socket, as `--workers` has, whichever worker wakes first accepts a whole burst
of connections, and keep-alive clients stay on it.

Both serve `api.app:create_app` (factory; `DATABASE_URL` from the environment) and leave the app
unchanged. Only for benchmarks.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import socket
import sys
from typing import Any


def nodelay(argv: list[str]) -> None:
    import uvicorn.config
    import uvicorn.main

    bind = uvicorn.config.Config.bind_socket

    def bind_socket(self: Any) -> socket.socket:
        sock = bind(self)
        if sock.family == socket.AF_UNIX:
            return sock
        return socket.socket(fileno=sock.detach())  # the kernel reports proto 6 (TCP)

    uvicorn.config.Config.bind_socket = bind_socket  # type: ignore[method-assign]
    sys.argv = ["uvicorn", *argv]
    uvicorn.main.main()


def _serve_one(host: str, port: int) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    config = uvicorn.Config(
        "api.app:create_app", factory=True, access_log=False, log_level="warning"
    )
    uvicorn.Server(config).run(sockets=[sock])


def reuseport(host: str, port: int, workers: int) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_serve_one, args=(host, port)) for _ in range(workers)]
    for p in procs:
        p.start()

    def stop(*_: Any) -> None:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: uvicorn shuts down gracefully

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for p in procs:
        p.join()


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in ("nodelay", "reuseport"):
        raise SystemExit(__doc__)
    if sys.argv[1] == "nodelay":
        nodelay(sys.argv[2:])
    else:
        host, port, workers = sys.argv[2:5]
        reuseport(host, int(port), int(workers))


if __name__ == "__main__":
    main()
