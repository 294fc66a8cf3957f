"""The event loop `charlm serve` runs MLflow's scoring server on (uvicorn's `--loop` hook): a default
thread pool of `CHARLM_SCORING_THREADS`, TCP_NODELAY under several workers, a Retry-After header on
a 503 whose body carries `retry_after_s`, and the model's own `ROUTES` (each finds MLflow's app
under `MLFLOW_APP` in its scope, for what it leaves to it). Outside the `charlm`
package because uvicorn imports it before the model, which must run the code logged with it."""

import asyncio
import json
import os
import socket
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
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


class ScoringLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        threads = int(os.environ.get(THREADS_ENV, DEFAULT_THREADS))
        self.set_default_executor(ThreadPoolExecutor(threads, thread_name_prefix="scoring"))

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

        def protocol_with_retry_after() -> Any:
            protocol = protocol_factory()
            if hasattr(protocol, "app"):  # uvicorn's HTTP protocols call the app they hold
                protocol.app = RetryAfter(protocol.app)
            return protocol

        return await super().create_server(protocol_with_retry_after, *args, sock=sock, **kwargs)
