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
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

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
    """Waits far longer before it accepts a connection another worker should take than a test runs:
    whatever it accepts, it accepted at once."""

    accept_wait_s = 1000.0


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


@pytest.fixture
def worker() -> Iterator[int]:
    """The pid of a live process, which stands for another worker."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield process.pid
    process.kill()
    process.wait()


def another_worker(loop: ScoringLoop, pid: int, held: int) -> None:
    """Publish, as a worker `pid` on the loop's listening socket would, that it holds `held`."""
    assert loop.occupancy is not None
    (loop.occupancy.directory / str(pid)).write_text(str(held))


Test = Callable[[socket.socket, list[socket.socket], asyncio.Server], Awaitable[None]]


def serve(loop: ScoringLoop, test: Test) -> None:
    """Run `test` with the loop serving a listener as uvicorn's workers share it; the clients it
    opens are closed after it, and its server, its listener and its loop."""
    listener = listener_like_uvicorns_workers_get()
    clients: list[socket.socket] = []

    async def main() -> None:
        server = await loop.create_server(Connection, sock=listener)
        assert loop.occupancy is not None
        directory = loop.occupancy.directory
        try:
            await test(listener, clients, server)
        finally:
            server.close()
            shutil.rmtree(directory, ignore_errors=True)  # with the other workers' files

    try:
        loop.run_until_complete(main())
    finally:
        for client in [*clients, listener]:
            client.close()
        loop.close()


def test_a_worker_holding_no_more_than_the_others_accepts_at_once(worker: int) -> None:
    loop = Patient()

    async def test(listener: socket.socket, clients: list[socket.socket], server: asyncio.Server) -> None:
        assert loop.occupancy is not None
        another_worker(loop, worker, 2)
        ended = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        )
        another_worker(loop, int(ended.stdout), 0)  # a worker that ended: not counted, and forgotten
        for held in range(1, 4):
            clients.append(socket.create_connection(listener.getsockname()))
            await until(lambda held=held: loop.open_connections == held)
        assert not (loop.occupancy.directory / ended.stdout.strip()).exists()
        assert (loop.occupancy.directory / str(os.getpid())).read_text() == "3"
        clients.pop().close()
        await until(lambda: loop.open_connections == 2)  # a closed connection no longer counts
        assert (loop.occupancy.directory / str(os.getpid())).read_text() == "2"

    serve(loop, test)


def test_a_worker_holding_more_than_another_leaves_the_connection_to_it(worker: int) -> None:
    loop = Patient()

    async def test(listener: socket.socket, clients: list[socket.socket], server: asyncio.Server) -> None:
        another_worker(loop, worker, 0)
        clients.append(socket.create_connection(listener.getsockname()))
        await until(lambda: loop.open_connections == 1)  # no more than the other: at once
        clients.append(socket.create_connection(listener.getsockname()))
        clients.append(await asyncio.to_thread(accept_as_another_worker, listener))  # the other took it
        assert loop.open_connections == 1

    serve(loop, test)


def test_a_connection_the_worker_holding_fewer_leaves_is_accepted_after_the_wait(worker: int) -> None:
    loop = ScoringLoop()

    async def test(listener: socket.socket, clients: list[socket.socket], server: asyncio.Server) -> None:
        another_worker(loop, worker, 0)  # a worker that takes nothing
        for held in range(1, 4):
            clients.append(socket.create_connection(listener.getsockname()))
            await until(lambda held=held: loop.open_connections == held)

    serve(loop, test)


class Slow(ScoringLoop):
    accept_wait_s = 0.5


def test_a_worker_that_closes_while_it_waits_accepts_nothing_and_withdraws(worker: int) -> None:
    loop = Slow()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))

    async def test(listener: socket.socket, clients: list[socket.socket], server: asyncio.Server) -> None:
        assert loop.occupancy is not None
        mine = loop.occupancy.mine
        another_worker(loop, worker, 0)
        clients.append(socket.create_connection(listener.getsockname()))
        await until(lambda: loop.open_connections == 1)
        clients.append(socket.create_connection(listener.getsockname()))  # it waits before this one
        await asyncio.sleep(0.1)
        server.close()
        await asyncio.sleep(2 * loop.accept_wait_s)
        assert loop.open_connections == 1 and not errors
        assert not mine.exists() and loop.occupancy is None  # no longer one of the workers

    serve(loop, test)
