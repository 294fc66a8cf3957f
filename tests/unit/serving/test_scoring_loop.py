"""The scoring server's event loop: a thread pool that holds many waiting requests, TCP_NODELAY on
connections accepted from a socket that does not say it is TCP, and each new connection left to the
worker that holds fewest."""

import ast
import asyncio
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import charlm_scoring_loop
from charlm_scoring_loop import DEFAULT_THREADS, ROUTES, THREADS_ENV, RetryAfter, ScoringLoop


def test_the_loop_imports_nothing_of_charlm() -> None:
    """uvicorn imports the loop before the model: importing charlm here would make the server run the
    installed library instead of the code logged with the model."""
    tree = ast.parse(Path(charlm_scoring_loop.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m.split(".")[0] == "charlm"}


def blocked_calls(loop: asyncio.AbstractEventLoop, calls: int, parties: int) -> None:
    """Run `calls` blocking calls on the loop's default pool, each waiting for `parties` to arrive."""
    barrier = threading.Barrier(parties, timeout=2)

    async def main() -> None:
        await asyncio.gather(*(asyncio.to_thread(barrier.wait) for _ in range(calls)))

    loop.run_until_complete(main())


def test_the_default_pool_holds_a_batch_of_waiting_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    loop = ScoringLoop()
    try:
        blocked_calls(loop, DEFAULT_THREADS, DEFAULT_THREADS)  # all of them wait at once
    finally:
        loop.close()

    monkeypatch.setenv(THREADS_ENV, "3")
    loop = ScoringLoop()
    try:
        blocked_calls(loop, 3, 3)
        with pytest.raises(threading.BrokenBarrierError):  # a fourth never starts
            blocked_calls(loop, 4, 4)
    finally:
        loop.close()


async def nodelay_of_accepted_connection(listener: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[int] = loop.create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    server = await loop.create_server(Probe, sock=listener)
    _, writer = await asyncio.open_connection(*listener.getsockname())
    try:
        return await asyncio.wait_for(accepted, timeout=5)
    finally:
        writer.close()
        server.close()


def listener_like_uvicorns_workers_get() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0)  # proto 0, as handed down
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


def test_accepted_connections_get_tcp_nodelay_from_a_listener_with_protocol_0() -> None:
    # The setup reproduces the problem: asyncio's own loop leaves Nagle's algorithm on...
    plain = asyncio.SelectorEventLoop()
    try:
        assert (
            plain.run_until_complete(nodelay_of_accepted_connection(listener_like_uvicorns_workers_get()))
            == 0
        )
    finally:
        plain.close()
    # ...and the scoring loop turns it off.
    loop = ScoringLoop()
    try:
        assert (
            loop.run_until_complete(nodelay_of_accepted_connection(listener_like_uvicorns_workers_get())) != 0
        )
    finally:
        loop.close()


def test_a_503_that_says_when_to_retry_gets_retry_after_on_any_route(monkeypatch: pytest.MonkeyPatch) -> None:
    async def app(scope: dict, receive: object, send: object) -> None:
        status, body = scope["answer"]
        await send({"type": "http.response.start", "status": status, "headers": [(b"x", b"1")]})
        await send({"type": "http.response.body", "body": body.encode()})

    async def unreachable(scope: dict, receive: object, send: object) -> None:
        raise AssertionError("a request for a model's own route went to the scoring server")

    async def call(answer: tuple[int, str], app: object = app, path: str = "/invocations") -> list[dict]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        await RetryAfter(app)({"type": "http", "method": "POST", "path": path, "answer": answer}, None, send)
        return sent

    for route in list(ROUTES):  # a model loaded before in this process filled them
        monkeypatch.delitem(ROUTES, route)
    monkeypatch.setitem(ROUTES, ("POST", "/stream"), app)  # as a model that serves more puts it
    loop = asyncio.new_event_loop()
    try:
        start, body = loop.run_until_complete(call((503, '{"retry_after_s": 7}')))
        assert start["headers"] == [(b"x", b"1"), (b"retry-after", b"7")] and body["body"]
        start, _ = loop.run_until_complete(call((503, '{"retry_after_s": 2}'), unreachable, "/stream"))
        assert start["headers"] == [(b"x", b"1"), (b"retry-after", b"2")]
        for answer in ((503, "{}"), (503, "not json"), (200, '{"retry_after_s": 7}')):  # left as they were
            start, _ = loop.run_until_complete(call(answer))
            assert start["headers"] == [(b"x", b"1")], answer
    finally:
        loop.close()


class Connection(asyncio.Protocol):
    """A protocol as uvicorn's are: a class whose instances take attributes."""


class Patient(ScoringLoop):
    """Waits so long before it accepts a connection another worker should take that the other
    always does (and accepts nothing meanwhile)."""

    accept_wait_s = 2.0


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.01)


def accept_as_another_worker(listener: socket.socket) -> socket.socket:
    """What another worker does: accept as soon as a connection is pending (the listener is shared
    and non-blocking)."""
    readable, _, _ = select.select([listener], [], [], 10)
    assert readable, "no connection came"
    accepted, _ = listener.accept()
    return accepted


def another_worker(loop: ScoringLoop, pid: int, held: int) -> None:
    """Publish, as a worker `pid` on the loop's listening socket would, that it holds `held`."""
    assert loop.occupancy is not None
    (loop.occupancy.directory / str(pid)).write_text(str(held))


def serve(loop: ScoringLoop, test: Callable[[socket.socket, list[socket.socket]], Awaitable[None]]) -> None:
    """Run `test` with the loop serving a listener as uvicorn's workers share it, and clients to close."""
    listener = listener_like_uvicorns_workers_get()
    clients: list[socket.socket] = []

    async def main() -> None:
        server = await loop.create_server(Connection, sock=listener)
        try:
            await test(listener, clients)
        finally:
            server.close()

    try:
        loop.run_until_complete(main())
    finally:
        for client in clients:
            client.close()
        if loop.occupancy is not None:
            shutil.rmtree(loop.occupancy.directory)
        loop.close()


def test_a_worker_that_holds_more_connections_leaves_the_next_to_one_that_holds_fewer() -> None:
    loop = Patient()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )

    async def test(listener: socket.socket, clients: list[socket.socket]) -> None:
        address = listener.getsockname()
        alive = os.getppid()
        another_worker(loop, alive, 0)
        another_worker(loop, int(gone.stdout), 0)  # a worker that ended: not counted, and forgotten
        clients.append(socket.create_connection(address))
        await until(lambda: loop.open_connections == 1)  # it held no more than the other: at once
        assert not (loop.occupancy.directory / gone.stdout.strip()).exists()  # type: ignore[union-attr]
        assert (loop.occupancy.directory / str(os.getpid())).read_text() == "1"  # type: ignore[union-attr]
        clients.append(socket.create_connection(address))
        clients.append(await asyncio.to_thread(accept_as_another_worker, listener))  # the other took it
        assert loop.open_connections == 1
        another_worker(loop, alive, 5)
        clients.append(socket.create_connection(address))
        await until(lambda: loop.open_connections == 2)  # now it holds fewer (after the wait, if any)
        clients.pop(0).close()
        await until(lambda: loop.open_connections == 1)  # a closed connection no longer counts

    serve(loop, test)


def test_a_connection_the_worker_holding_fewer_leaves_is_accepted_after_the_wait() -> None:
    loop = ScoringLoop()

    async def test(listener: socket.socket, clients: list[socket.socket]) -> None:
        another_worker(loop, os.getppid(), 0)  # a worker that takes nothing
        for held in range(1, 4):
            clients.append(socket.create_connection(listener.getsockname()))
            await until(lambda held=held: loop.open_connections == held)

    serve(loop, test)
