"""The event loop `charlm serve` runs MLflow's scoring server on (uvicorn's `--loop` hook): a default
thread pool of `CHARLM_SCORING_THREADS`, TCP_NODELAY under several workers, connections spread
evenly over the workers, a Retry-After header on a 503 whose body carries `retry_after_s`, and the
model's own `ROUTES` (each finds MLflow's app under `MLFLOW_APP` in its scope, for what it leaves
to it). Outside the `charlm` package because uvicorn imports it before the model, which must run
the code logged with it."""

import asyncio
import contextlib
import json
import os
import socket
import stat
import tempfile
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

THREADS_ENV = "CHARLM_SCORING_THREADS"
ROUTES: dict[tuple[str, str], Any] = {}  # ASGI apps by method and path, filled by the loaded model
DEFAULT_THREADS = 64
RETRY_AFTER_KEY = "retry_after_s"  # in a 503's JSON body
MLFLOW_APP = "charlm.mlflow_app"  # the scope's key of the app a route stands in front of

Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]


class RetryAfter:
    """ASGI middleware: a 503 whose JSON body carries `retry_after_s` gets a Retry-After header;
    a request for one of `ROUTES` goes to it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Message, receive: Any, send: Send) -> None:
        held: Message | None = None  # a 503's start, until its body says how long to wait

        async def send_with_retry_after(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message["status"] == 503:
                held = message
                return
            if held is not None:
                try:
                    seconds = json.loads(message.get("body", b"")).get(RETRY_AFTER_KEY)
                except (ValueError, AttributeError):
                    seconds = None
                if seconds is not None:
                    retry_after = (b"retry-after", str(int(seconds)).encode())
                    held = {**held, "headers": [*held.get("headers", []), retry_after]}
                await send(held)
                held = None
            await send(message)

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if route := ROUTES.get((scope.get("method"), scope.get("path"))):
            scope = {**scope, MLFLOW_APP: self.app}
        await (route or self.app)(scope, receive, send_with_retry_after)


class Occupancy:
    """How many connections each worker on one listening socket holds: a file per worker, named by
    its pid, in a directory of this user's own named by the socket (the workers share it, so they
    share its inode). Reading and writing them is best effort: a worker that cannot accepts as any
    worker would."""

    def __init__(self, listener: socket.socket) -> None:
        where = os.fstat(listener.fileno())
        name = f"charlm-workers-{os.getuid()}-{where.st_dev}-{where.st_ino}"
        self.directory = Path(tempfile.gettempdir()) / name
        self.directory.mkdir(mode=0o700, exist_ok=True)
        made = self.directory.lstat()  # another user's, or a link, could feed or redirect the files
        if not stat.S_ISDIR(made.st_mode) or made.st_uid != os.getuid() or made.st_mode & 0o077:
            raise PermissionError(f"{self.directory}: not a directory of this user's alone")
        self.mine = self.directory / str(os.getpid())

    def publish(self, held: int) -> None:
        staging = self.mine.with_suffix(".new")
        with contextlib.suppress(OSError):
            staging.write_text(str(held))
            staging.replace(self.mine)  # a reader sees the old count or the new, never half a file

    def withdraw(self) -> None:
        """This worker stops accepting: its count goes, and the directory with the last."""
        with contextlib.suppress(OSError):
            self.mine.unlink(missing_ok=True)
            self.directory.rmdir()

    def fewest_elsewhere(self) -> int | None:
        """The fewest connections another live worker holds; None without another."""
        counts = []
        try:
            entries = list(self.directory.iterdir())
        except OSError:
            return None
        for entry in entries:
            if entry == self.mine or not entry.name.isdigit():
                continue
            try:
                os.kill(int(entry.name), 0)
                counts.append(int(entry.read_text()))
            except ProcessLookupError:  # a worker gone without withdrawing: its count with it
                with contextlib.suppress(OSError):
                    entry.unlink(missing_ok=True)
            except (OSError, ValueError):  # a file being replaced
                continue
        return min(counts, default=None)


class ScoringLoop(asyncio.SelectorEventLoop):
    """Workers share one listening socket, and whichever wakes first accepts: with keep-alive clients
    one worker could hold 6 of 8 connections, its batch three times the other's while the other's
    core idles. So each worker publishes how many connections it holds (`Occupancy`), and one that
    holds more than another waits `accept_wait_s` before it accepts: the one holding fewest takes
    the connection, and if it does not (busy, or gone), the waiting one still does. Counted by each
    connection's protocol: one that a transport swaps for another (a WebSocket upgrade, which the
    scoring server does not serve) would stay counted."""

    accept_wait_s = 0.02

    def __init__(self) -> None:
        super().__init__()
        threads = int(os.environ.get(THREADS_ENV, DEFAULT_THREADS))
        self.set_default_executor(ThreadPoolExecutor(threads, thread_name_prefix="scoring"))
        self.open_connections = 0
        self.occupancy: Occupancy | None = None  # once it serves a shared listening socket

    def _accept_connection(
        self, protocol_factory: Callable[[], Any], sock: socket.socket, *args: Any
    ) -> None:
        """asyncio calls this when the listening socket has a connection to accept."""
        fewest = self.occupancy.fewest_elsewhere() if self.occupancy is not None else None
        if fewest is None or self.open_connections <= fewest:
            return super()._accept_connection(protocol_factory, sock, *args)
        self._remove_reader(sock.fileno())  # else asyncio calls again at once: the socket stays readable
        self.call_later(self.accept_wait_s, self._accept_after_waiting, protocol_factory, sock, *args)

    def _accept_after_waiting(
        self, protocol_factory: Callable[[], Any], sock: socket.socket, *args: Any
    ) -> None:
        if sock.fileno() == -1:  # the server closed meanwhile
            return
        self._start_serving(protocol_factory, sock, *args)  # listen again...
        super()._accept_connection(protocol_factory, sock, *args)  # ...and accept what another worker left

    def _stop_serving(self, sock: socket.socket) -> None:
        super()._stop_serving(sock)
        if self.occupancy is not None:  # a worker that stops serving takes no more connections
            self.occupancy.withdraw()
            self.occupancy = None

    def _count(self, change: int) -> None:
        self.open_connections += change
        if self.occupancy is not None:
            self.occupancy.publish(self.open_connections)

    async def create_server(
        self,
        protocol_factory: Callable[[], Any],
        *args: Any,
        sock: socket.socket | None = None,
        **kwargs: Any,
    ) -> Any:
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
            # The same listening socket, asked anew: the kernel reports IPPROTO_TCP, which accepted
            # sockets inherit and asyncio needs to see before it sets TCP_NODELAY on them.
            sock = socket.socket(fileno=os.dup(sock.fileno()))
        if sock is not None:  # uvicorn hands its workers the socket they share
            with contextlib.suppress(OSError):  # without it, the worker accepts as any would
                self.occupancy = Occupancy(sock)
                self.occupancy.publish(self.open_connections)

        def protocol_counted_with_retry_after() -> Any:
            protocol = protocol_factory()
            if hasattr(protocol, "app"):  # uvicorn's HTTP protocols call the app they hold
                protocol.app = RetryAfter(protocol.app)
            made, lost = protocol.connection_made, protocol.connection_lost

            def connection_made(transport: asyncio.BaseTransport) -> None:
                self._count(+1)
                made(transport)

            def connection_lost(exc: Exception | None) -> None:
                self._count(-1)
                lost(exc)

            with contextlib.suppress(AttributeError):  # a protocol with __slots__ goes uncounted
                protocol.connection_made, protocol.connection_lost = connection_made, connection_lost
            return protocol

        return await super().create_server(protocol_counted_with_retry_after, *args, sock=sock, **kwargs)
