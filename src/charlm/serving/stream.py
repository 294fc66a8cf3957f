"""The routes `charlm serve` adds to MLflow's scoring server, which answers a custom model only with
its whole prediction (https://github.com/mlflow/mlflow/issues/12439): `POST /stream`, the text as
server-sent events (`data: {"index": i, "text": ...}` with a row's new characters, then `event: done`
or `event: error`), `GET /`, a page to try the model in a browser, and `POST /invocations` in front
of MLflow's own, for the requests it would hand `predict` as they are."""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST
from pydantic import ValidationError

from charlm.generation.decoder import Task
from charlm.records import Record, invalid
from charlm.serving.batching import Batcher, Job
from charlm.serving.interface import InputRow
from charlm.serving.refusals import refusal
from charlm_scoring_loop import MLFLOW_APP

STREAM_PATH = "/stream"
INVOCATIONS_PATH = "/invocations"
PAGE = Path(__file__).with_name("page.html")
# Events carry what the batch made since the last; sent every step, 32 clients' events would cost
# the worker more than their generation.
EVENT_INTERVAL_S = 0.05

Message = dict[str, Any]
App = Callable[[Message, Any, Any], Awaitable[None]]  # scope, receive, send


class StreamBody(Record):
    """What `POST /stream` takes: the texts to generate, as `/invocations` does."""

    inputs: list[InputRow]


def routes(
    tasks_of: Callable[[list[Any]], list[Task]], batcher: Batcher, timeout_s: float
) -> dict[tuple[str, str], App]:
    """The routes, by method and path, for a model that checks its rows with `tasks_of`."""

    async def page(scope: Message, receive: Any, send: Any) -> None:
        await respond(send, 200, PAGE.read_bytes(), b"text/html; charset=utf-8")

    async def invocations(scope: Message, receive: Any, send: Any) -> None:
        """A JSON request of `inputs` alone skips MLflow's input conversion and its thread pool:
        the batching thread wakes it when its texts are done, and its predictions are written as
        MLflow writes them. Refused before the batch (a row the model cannot take, 400; a busy
        worker, 503), past the deadline (504) or failed by the batch, it is answered with MLflow's
        status and error code, and the refusal's message alone: MLflow's app would spend a
        prediction's parsing on it and echo the whole request, an over-long prompt too, in the
        message. Any other request (another format, `params`, a row of unknown keys or
        types) goes to MLflow's app, which answers it as it always has."""
        body, loop, done = await read_body(receive), asyncio.get_running_loop(), asyncio.Event()

        def finished(job: Job) -> None:  # on the batching thread, when the job is done
            loop.call_soon_threadsafe(done.set)

        try:
            if content_type(scope) not in PLAIN_JSON:
                raise ValueError("a content type MLflow checks further (charset)")
            rows = StreamBody.model_validate_json(body).inputs
        except Exception:
            return await scope[MLFLOW_APP](scope, replay(body, receive), send)
        try:
            job = batcher.enqueue(tasks_of(rows), timeout_s, finished, each_step=False)
        except Exception as err:
            if (refused := refusal(err)) is None:
                return await scope[MLFLOW_APP](scope, replay(body, receive), send)
            return await answer(send, refused)
        try:
            try:
                await asyncio.wait_for(done.wait(), job.remaining_s())
            except TimeoutError:
                raise job.give_up() from None
            texts, _ = job.take([0] * len(rows))
        except Exception as err:  # past its deadline, or the batch failed it
            return await answer(
                send, refusal(err) or MlflowException(f"generation failed: {err}", error_code=BAD_REQUEST)
            )
        finally:  # done, or given up on (cancelled too): unfinished rows leave the batch
            job.abandoned = not job.finished.is_set()
        await respond(send, 200, json.dumps({"predictions": texts}).encode(), JSON)  # as MLflow writes it

    async def stream(scope: Message, receive: Any, send: Any) -> None:
        body, loop, woken = await read_body(receive), asyncio.get_running_loop(), asyncio.Event()
        told = [0, 0.0]  # characters the stream was told of, and when it may be told again

        def advanced(job: Job) -> None:
            """On the batching thread, after each step of the job: wake the stream when there is
            something new, at most every EVENT_INTERVAL_S (each wake costs the batching thread
            the GIL), and at once when the job ends."""
            chars, now = sum(len(row.chars) for row in job.rows if row is not None), time.monotonic()
            if job.finished.is_set() or (chars > told[0] and now >= told[1]):
                told[:] = chars, now + EVENT_INTERVAL_S
                loop.call_soon_threadsafe(woken.set)

        if media_type(scope) != JSON:
            refused = {
                "error_code": "UNSUPPORTED_MEDIA_TYPE",
                "message": "send the request as application/json",
            }
            return await respond(send, 415, json.dumps(refused).encode(), JSON)
        try:
            try:
                rows = StreamBody.model_validate_json(body).inputs
            except ValidationError as err:
                raise invalid(err) from None
            job = batcher.enqueue(tasks_of(rows), timeout_s, advanced)
        except Exception as err:
            if (refused := refusal(err)) is None:
                raise
            return await answer(send, refused)
        await start_response(send, 200, b"text/event-stream")

        async def watch() -> None:  # the client went away: its rows leave at the next step
            while (await receive())["type"] != "http.disconnect":
                pass
            job.abandoned = True
            woken.set()

        watcher, sent = asyncio.create_task(watch()), [0] * len(rows)
        try:
            while not job.abandoned:
                try:
                    await asyncio.wait_for(woken.wait(), job.remaining_s())
                except TimeoutError:
                    return await event(send, "error", {"message": str(job.give_up())}, last=True)
                woken.clear()
                try:
                    news, over = job.take(sent)
                except Exception as err:  # the batch failed it
                    return await event(send, "error", {"message": str(err)}, last=True)
                for index, text in enumerate(news):
                    if text:
                        await event(send, "", {"index": index, "text": text})
                if over:
                    return await event(send, "done", {}, last=True)
        finally:
            watcher.cancel()

    return {("GET", "/"): page, ("POST", STREAM_PATH): stream, ("POST", INVOCATIONS_PATH): invocations}


JSON = b"application/json"
PLAIN_JSON = (JSON, JSON + b"; charset=utf-8")  # what MLflow's /invocations takes without a word
HEADERS = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]


def content_type(scope: Message) -> bytes:
    return dict(scope["headers"]).get(b"content-type", b"").lower()


def media_type(scope: Message) -> bytes:
    return content_type(scope).split(b";")[0].strip()


def replay(body: bytes, receive: Callable[[], Awaitable[Message]]) -> Callable[[], Awaitable[Message]]:
    """`receive` for an app that reads a request whose body was read already."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


async def read_body(receive: Callable[[], Awaitable[Message]]) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    return body


async def start_response(send: Any, status: int, content_type: bytes, length: int | None = None) -> None:
    headers = [*HEADERS, (b"content-type", content_type)]
    if length is not None:  # else the body is sent chunked
        headers.append((b"content-length", str(length).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def respond(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    await start_response(send, status, content_type, len(body))
    await send({"type": "http.response.body", "body": body})


async def answer(send: Any, error: MlflowException) -> None:
    """An error as the scoring server answers it: its status, its JSON."""
    await respond(send, error.get_http_status_code(), error.serialize_as_json().encode(), JSON)


async def event(send: Any, name: str, data: dict[str, Any], last: bool = False) -> None:
    """One server-sent event; the last ends the response."""
    lines = (f"event: {name}\n" if name else "") + f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
    await send({"type": "http.response.body", "body": lines.encode(), "more_body": not last})
