"""Serving, as a user meets it: the registered champion loads without pickle and generates, refuses
bad requests by name, batches concurrent callers (in-process and over HTTP), streams from
`charlm generate`, and serves over HTTP with `charlm serve`."""

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pytest
import torch
from mlflow.exceptions import MlflowException

from tests.helpers import (
    background_server,
    free_port,
    http_call,
    http_json,
    register_candidate,
    run,
    saved_candidate,
    small_vocab,
)

pytestmark = pytest.mark.slow

LETTERS = set(small_vocab().itos[1:])


@pytest.fixture
def champion_uri(tmp_path: Path, mlflow_client: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    register_candidate(mlflow_client, saved_candidate(tmp_path, 1, val_bpc=2.0))
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return "models:/charlm@champion"


def test_pyfunc_round_trip_without_pickle(champion_uri: str) -> None:
    model = mlflow.pyfunc.load_model(champion_uri)
    rows = [{"prompt": "abc", "length": 30, "seed": 3}, {"prompt": "h" * 5000, "length": 5, "seed": 4}]
    out = model.predict(rows)
    assert [len(t) for t in out] == [30, 5] and set("".join(out)) <= LETTERS
    assert model.predict(rows) == out  # seeded
    assert len(model.predict([{"prompt": "a"}])[0]) == 20  # the logged default length
    for bad, message in (
        ({"prompt": "xyz", "seed": 1}, "not in the model's vocabulary"),
        ({"prompt": "a", "temperature": 0.0}, "temperature: must be > 0"),
        ({"prompt": "a", "length": 101}, "max_request_chars: a request asks for at most 100 characters"),
        ({"prompt": "a", "lenght": 5}, "lenght: unknown key (did you mean 'length'?)"),
        ({"prompt": None}, "prompt"),
    ):
        with pytest.raises(MlflowException) as info:
            model.predict([bad])
        assert message in str(info.value), (bad, str(info.value))


def test_concurrent_predict_calls_share_a_batch_and_keep_their_seeds(champion_uri: str) -> None:
    model = mlflow.pyfunc.load_model(champion_uri)
    rows = [{"prompt": "abc"[: 1 + n % 3], "length": 30 + 6 * n, "seed": n} for n in range(12)]
    alone = [model.predict([row])[0] for row in rows]
    batcher = model.unwrap_python_model().batcher
    steps_before = batcher.steps
    onednn = torch.backends.mkldnn.enabled
    seen: set[bool] = set()
    stop = threading.Event()

    def watch() -> None:  # nothing may flip process-wide switches while requests run
        while not stop.is_set():
            seen.add(torch.backends.mkldnn.enabled)
            time.sleep(0.0005)  # a spinning thread would starve the batching thread of the GIL

    watcher = threading.Thread(target=watch)
    watcher.start()
    with ThreadPoolExecutor(len(rows)) as pool:
        together = list(pool.map(lambda row: model.predict([row])[0], rows))
    stop.set()
    watcher.join()
    assert together == alone and seen == {onednn}
    # Alone, the requests took one step per character each; together they shared most steps.
    assert batcher.steps - steps_before < steps_before / 2


def test_charlm_generate_streams_from_the_registry(champion_uri: str, tmp_path: Path) -> None:
    env = {
        "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    }
    cmd = ["charlm", "generate", "--model", champion_uri, "--prompt", "ab", "--length", "40", "--seed", "5"]
    first = run(cmd, tmp_path, env=env).stdout
    assert first.startswith("ab") and len(first.rstrip("\n")) == 42
    assert run(cmd, tmp_path, env=env).stdout == first
    # The command samples as the served model does: its logged defaults fill what is not given.
    served = mlflow.pyfunc.load_model(champion_uri).predict([{"prompt": "ab", "length": 40, "seed": 5}])
    assert first == f"ab{served[0]}\n"
    missing = run(
        ["charlm", "generate", "--model", "models:/nothing@champion", "--prompt", "a"],
        tmp_path,
        env=env,
        check=False,
    )
    assert missing.returncode == 2 and "cannot load from MLflow" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = run([*cmd[:-2], "--temperature", "0"], tmp_path, env=env, check=False)
    assert bad.returncode == 2 and "temperature: must be > 0" in bad.stderr


def test_charlm_serve_answers_concurrent_invocations_and_refuses_bad_requests_by_name(
    champion_uri: str, tmp_path: Path
) -> None:
    port = free_port()
    cmd = ["charlm", "serve", "--model", champion_uri, "--port", str(port)]
    with background_server(cmd, tmp_path, f"http://127.0.0.1:{port}/ping"):
        url = f"http://127.0.0.1:{port}/invocations"
        request = {"inputs": [{"prompt": "abc", "length": 25, "seed": 11}]}
        status, body = http_json(url, request)
        assert status == 200
        (text,) = body["predictions"]
        assert len(text) == 25 and set(text) <= LETTERS
        assert http_json(url, request)[1] == body  # the seed is honoured
        for bad, named in (
            (
                {"inputs": [{"prompt": "abc", "length": 10**6}]},
                "max_request_chars: a request asks for at most 100",
            ),
            (
                {"inputs": [{"prompt": "a", "length": 1}] * 5},
                "max_request_rows: a request asks for at most 4 texts, got 5",
            ),
            ({"inputs": [{"prompt": "abc", "lenght": 5}]}, "lenght: unknown key (did you mean 'length'?)"),
            ({"inputs": [{"prompt": "abc", "max_new_chars": 5}]}, "max_new_chars: unknown key"),
            ({"inputs": [{"prompt": None, "length": 5}]}, "prompt"),
            ({"inputs": [{"length": 5}]}, "prompt"),
            ({"dataframe_records": [{"prompt": "abc"}]}, "'inputs'"),  # the format before `inputs`
        ):
            status, body = http_json(url, bad)
            assert status == 400 and named in body["message"], (bad, body)
        assert http_json(url, request)[0] == 200  # still serving after bad requests

        rows = [{"prompt": "ab", "length": 60, "seed": n} for n in range(8)]
        alone = [http_json(url, {"inputs": [row]})[1]["predictions"][0] for row in rows]
        bad = {"inputs": [{"prompt": "xyz", "length": 60}]}
        with ThreadPoolExecutor(len(rows) + 2) as pool:
            answers = list(
                pool.map(lambda r: http_json(url, r), [*({"inputs": [row]} for row in rows), bad, bad])
            )
        assert [a[1]["predictions"][0] for a in answers[:-2]] == alone  # seeded texts, batched or not
        assert [a[0] for a in answers[-2:]] == [400, 400]


def test_one_client_cannot_stall_the_others(
    tmp_path: Path, mlflow_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A heavy request runs one row at a time (its share of a batch of two); a light request joins
    beside it and finishes while it runs; a request the worker cannot hold is answered 503 with
    Retry-After, at once."""
    limits = {
        "max_request_chars": 200_000,
        "max_batch_rows": 2,
        "max_request_batch_rows": 1,
        "max_waiting_rows": 3,
    }
    register_candidate(mlflow_client, saved_candidate(tmp_path, 1, val_bpc=2.0), **limits)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    port = free_port()
    cmd = ["charlm", "serve", "--model", "models:/charlm@champion", "--port", str(port), "--workers", "1"]
    with background_server(cmd, tmp_path, f"http://127.0.0.1:{port}/ping"):
        url = f"http://127.0.0.1:{port}/invocations"
        heavy = {"inputs": [{"prompt": "ab", "length": 60_000, "seed": n} for n in range(3)]}  # 2 rows wait
        with ThreadPoolExecutor(1) as pool:
            # The heavy request needs 180,000 characters one row at a time; its client gives up after 8 s.
            heavy_answer = pool.submit(http_call, url, heavy, 8)
            # More rows than the worker may hold: refused at once, 503, without generating anything;
            # the message says how many rows wait, so the heavy request's two are seen queued.
            over = {"inputs": [{"prompt": "a", "length": 5}] * 4}
            while "2 rows wait" not in (answer := http_call(url, over))[1]["message"]:
                assert answer[0] == 503 and not heavy_answer.done(), answer
            status, body, headers = answer
            assert status == 503 and "max_waiting_rows 3" in body["message"], body
            assert int(headers["Retry-After"]) >= 1 and body["retry_after_s"] == int(headers["Retry-After"])
            # A light request joins the batch beside the heavy one's running row and is done
            # while that one has most of its work ahead.
            status, body, _ = http_call(url, {"inputs": [{"prompt": "ab", "length": 200, "seed": 1}]})
            assert status == 200 and len(body["predictions"][0]) == 200
            assert not heavy_answer.done()
            with pytest.raises(TimeoutError):  # urllib's socket timeout: the heavy client left
                heavy_answer.result()
