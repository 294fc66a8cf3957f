"""stream: `POST /stream` as the ASGI app `charlm serve` routes to: the text as events, the same as
the batch gives it; a bad request is a 400 before any event; a client that goes away takes its rows
out of the batch at the next step; only JSON is taken. `POST /invocations` answers what MLflow
would hand `predict` as it is, as MLflow writes it, refuses what the model or a busy worker
refuses itself, and leaves the rest to MLflow's app."""

import asyncio
import io
import json
import time
from typing import Any

import pytest

from charlm.generation.decoder import generate
from charlm.params.generation import SamplingOptions
from charlm.params.serving import LimitsConfig
from charlm.serving.batching import Batcher
from charlm.serving.interface import InputRow, ServedSettings
from charlm.serving.stream import INVOCATIONS_PATH, STREAM_PATH, routes
from charlm_scoring_loop import MLFLOW_APP
from tests.helpers import config, small_vocab, step_counter, tiny_model

VOCAB = small_vocab()
SETTINGS = ServedSettings(sampling=config(SamplingOptions, length=40, seed=None), limits=config(LimitsConfig))


def app_for(batcher: Batcher, path: str = STREAM_PATH) -> Any:
    def tasks_of(rows: list[InputRow]) -> list[Any]:
        return SETTINGS.tasks(rows, VOCAB)

    return routes(tasks_of, batcher, timeout_s=60)[("POST", path)]


def call(
    app: Any,
    body: Any,
    content_type: bytes = b"application/json",
    leave_after: int = 0,
    scope: dict[str, Any] | None = None,
) -> list[Any]:
    """Run the app on one request; the messages it sends. With `leave_after`, the client goes
    away once it has that many events."""
    sent: list[Any] = []
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not gone.is_set() and not receive.started:  # type: ignore[attr-defined]
            receive.started = True  # type: ignore[attr-defined]
            return {"type": "http.request", "body": json.dumps(body).encode()}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if leave_after and sum(m.get("body", b"").startswith(b"data:") for m in sent) >= leave_after:
            gone.set()

    receive.started = False  # type: ignore[attr-defined]
    scope = {
        "type": "http",
        "method": "POST",
        "path": STREAM_PATH,
        "headers": [(b"content-type", content_type)],
        **(scope or {}),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 60))
    return sent


def events(sent: list[Any]) -> list[tuple[str, Any]]:
    out = []
    for block in b"".join(m.get("body", b"") for m in sent[1:]).decode().split("\n\n"):
        if block:
            lines = dict(line.split(": ", 1) for line in block.splitlines())
            out.append((lines.get("event", "text"), json.loads(lines["data"])))
    return out


@pytest.fixture(scope="module")
def batcher() -> Batcher:
    return Batcher(tiny_model("lstm"), VOCAB, config(LimitsConfig))


def test_the_stream_is_the_batch_text_in_events(batcher: Batcher) -> None:
    rows = [{"prompt": "ab", "length": 3000, "seed": 3}, {"prompt": "h", "length": 20, "seed": 4}]
    sent = call(app_for(batcher), {"inputs": rows})
    assert sent[0]["status"] == 200 and (b"content-type", b"text/event-stream") in sent[0]["headers"]
    got = events(sent)
    assert got[-1] == ("done", {})
    for index, row in enumerate(rows):
        text = "".join(e[1]["text"] for e in got if e[0] == "text" and e[1]["index"] == index)
        options = SETTINGS.tasks([InputRow.model_validate(row)], VOCAB)[0].options
        assert text == "".join(generate(batcher.net, VOCAB, row["prompt"], options, batcher.net_step))
    assert len([e for e in got if e[0] == "text" and e[1]["index"] == 0]) > 1  # in pieces


@pytest.mark.parametrize(
    ("body", "content_type", "status", "named"),
    [
        (
            {"inputs": [{"prompt": "ab", "lenght": 5}]},
            b"application/json",
            400,
            "inputs.0.lenght: unknown key",
        ),
        ({"inputs": [{"prompt": "xyz"}]}, b"application/json", 400, "not in the model's vocabulary"),
        ({"inputs": [{"prompt": "ab", "seed": 2**64}]}, b"application/json", 400, "seed: must be <"),
        ({"inputs": []}, b"application/json", 400, "inputs: a request asks for at least one text"),
        (
            {"inputs": [{"prompt": "ab"}]},
            b"text/plain",
            415,
            "application/json",
        ),  # no cross-origin simple post
    ],
)
def test_a_bad_request_is_refused_before_any_event(
    batcher: Batcher, body: Any, content_type: bytes, status: int, named: str
) -> None:
    start, answer = call(app_for(batcher), body, content_type)
    assert start["status"] == status and named in json.loads(answer["body"])["message"]


def test_a_client_that_goes_away_leaves_the_batch_within_steps(batcher: Batcher) -> None:
    app, steps = app_for(batcher), step_counter(batcher)
    sent = call(app, {"inputs": [{"prompt": "ab", "length": 30_000, "seed": 1}]}, leave_after=1)
    left_at = steps()
    deadline = time.monotonic() + 30
    while batcher.decoder.rows:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert steps() - left_at <= 3  # it left at the next step or so, not after 30,000
    assert steps() < 30_000 and len(events(sent)) == 1


def test_invocations_answer_as_mlflow_writes_and_leave_the_rest_to_mlflows_app(batcher: Batcher) -> None:
    from mlflow.pyfunc.scoring_server import predictions_to_json

    handed: list[bytes] = []

    async def mlflow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()  # the body, read again
        handed.append(message["body"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"mlflow"})

    app, mlflow = app_for(batcher, INVOCATIONS_PATH), {MLFLOW_APP: mlflow_app}
    rows = [{"prompt": "ab", "length": 30, "seed": 3}, {"prompt": "h\u00e9", "length": 5, "seed": 4}]
    for content_type in (b"application/json", b"Application/JSON; charset=UTF-8"):
        sent = call(app, {"inputs": rows}, content_type, scope=mlflow)
        texts = [
            "".join(
                generate(
                    batcher.net,
                    VOCAB,
                    r["prompt"],
                    SETTINGS.tasks([InputRow.parse(r)], VOCAB)[0].options,
                    batcher.net_step,
                )
            )
            for r in rows
        ]
        written = io.StringIO()
        predictions_to_json(texts, written)
        assert sent[0]["status"] == 200 and sent[1]["body"] == written.getvalue().encode()
        assert (b"content-length", str(len(sent[1]["body"])).encode()) in sent[0]["headers"]
    assert handed == []
    others = [
        ({"inputs": rows, "params": {"x": 1}}, b"application/json"),  # params: MLflow's to check
        ({"dataframe_records": rows}, b"application/json"),  # another format
        ({"inputs": [{"prompt": "ab", "lenght": 5}]}, b"application/json"),  # a bad row: MLflow's words
        ({"inputs": rows}, b"application/json; charset=latin-1"),  # MLflow refuses the charset
        ({"inputs": rows}, b"text/csv"),
    ]
    for body, content_type in others:
        sent = call(app, body, content_type, scope=mlflow)
        assert (sent[0]["status"], sent[1]["body"]) == (299, b"mlflow"), body
        assert handed.pop() == json.dumps(body).encode()


def test_invocations_refuse_what_the_model_refuses_without_mlflows_app() -> None:
    """A row the model cannot take is a 400 and a request a busy worker cannot hold a 503 with
    `retry_after_s`, each with MLflow's error code and the refusal's words alone: MLflow's app
    would echo the request, a 4,001-character prompt whole."""

    async def mlflow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise AssertionError("a refusal reached MLflow's app")

    limits = config(LimitsConfig, max_request_rows=2, max_waiting_rows=2, max_prompt_chars=4_000)
    settings = ServedSettings(sampling=SETTINGS.sampling, limits=limits)
    idle = Batcher(tiny_model("lstm"), VOCAB, limits, threaded=False)  # nothing leaves its queue
    app = routes(lambda rows: settings.tasks(rows, VOCAB), idle, timeout_s=60)[("POST", INVOCATIONS_PATH)]
    mlflow = {MLFLOW_APP: mlflow_app}

    def refused(body: Any) -> tuple[int, dict[str, Any]]:
        start, answer = call(app, body, scope=mlflow)
        return start["status"], json.loads(answer["body"])

    for body, named in (
        ({"inputs": [{"prompt": "a" * 4_001}]}, "max_prompt_chars: a prompt has at most 4000 characters"),
        ({"inputs": [{"prompt": "xyz"}]}, "not in the model's vocabulary"),
        ({"inputs": [{"prompt": "ab"}] * 3}, "max_request_rows: a request asks for at most 2 texts, got 3"),
    ):
        status, error = refused(body)
        assert (status, error["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), error
        assert error["message"].startswith("invalid request: ") and named in error["message"], error
        assert len(error["message"]) < 200, error

    idle.enqueue(settings.tasks([InputRow.parse({"prompt": "ab"})] * 2, VOCAB), 60)  # the queue is full
    status, error = refused({"inputs": [{"prompt": "ab"}]})
    assert (status, error["error_code"]) == (503, "TEMPORARILY_UNAVAILABLE"), error
    assert "2 rows wait to join its batch (max_waiting_rows 2)" in error["message"], error
    assert error["retry_after_s"] >= 1
