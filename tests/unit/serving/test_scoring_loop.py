"""The scoring server's event loop: a thread pool that holds many waiting requests, and
TCP_NODELAY on connections accepted from a socket that does not say it is TCP."""

import ast
import asyncio
import socket
import threading
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
