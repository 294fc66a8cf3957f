"""The event loop `charlm serve` runs MLflow's scoring server on (uvicorn's `--loop` hook).

Two things differ from uvicorn's default asyncio loop, both for continuous batching:

- The default thread pool. The scoring server runs each request's `predict` in the loop's default
  executor, and a charlm `predict` holds its thread while its rows are in the running batch.
  asyncio's own pool has `min(32, cores + 4)` threads (6 on two cores), which caps the batch at that
  many requests; this one has `CHARLM_SCORING_THREADS` (default 64).
- TCP_NODELAY on every connection. With `--workers N` uvicorn hands its workers a listening socket
  whose protocol reads 0, and asyncio only disables Nagle's algorithm on sockets that say TCP, so
  every request after the first on a keep-alive connection waits ~40 ms for a delayed ACK.

This module stands outside the `charlm` package on purpose: uvicorn imports it before the model
loads, and importing `charlm` first would make the server run the installed library instead of
the code logged with the model.
"""

import asyncio
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

THREADS_ENV = "CHARLM_SCORING_THREADS"
DEFAULT_THREADS = 64


class ScoringLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        threads = int(os.environ.get(THREADS_ENV, DEFAULT_THREADS))
        self.set_default_executor(ThreadPoolExecutor(threads, thread_name_prefix="scoring"))

    async def create_server(self, *args: Any, sock: socket.socket | None = None, **kwargs: Any) -> Any:
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
            # The same listening socket, asked anew: the kernel reports IPPROTO_TCP, which accepted
            # sockets inherit and asyncio needs to see before it sets TCP_NODELAY on them.
            sock = socket.socket(fileno=os.dup(sock.fileno()))
        return await super().create_server(*args, sock=sock, **kwargs)
