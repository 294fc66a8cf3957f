"""serving: the registered pyfunc loads without pickle, generates, refuses bad requests, batches
concurrent callers (in-process and over HTTP), and serves with `charlm serve`."""

import http.client
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
import pytest
import torch
from mlflow.exceptions import MlflowException

from charlm.serving import serve_command
from tests.conftest import background_server, free_port, http_json, run
from tests.test_registry import VOCAB, do_register, make_candidate


@pytest.fixture
def champion_uri(tmp_path: Path, mlflow_client: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    do_register(mlflow_client, make_candidate(tmp_path, 1, val_bpc=2.0))
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return "models:/charlm@champion"


@pytest.mark.slow
def test_pyfunc_round_trip_without_pickle(champion_uri: str) -> None:
    model = mlflow.pyfunc.load_model(champion_uri)
    rows = pd.DataFrame(
        [
            {"prompt": "abc", "length": 30, "seed": 3},
            {"prompt": "h" * 5000, "length": 5, "seed": 4},
        ]
    )
    out = model.predict(rows)
    assert [len(t) for t in out] == [30, 5] and set("".join(out)) <= set(VOCAB.itos[1:])
    assert model.predict(rows) == out  # seeded
    assert len(model.predict(pd.DataFrame([{"prompt": "a"}]))[0]) == 20  # the logged default length
    for bad in (
        {"prompt": "xyz", "seed": 1},
        {"prompt": "a", "temperature": 0.0},
        {"prompt": "a", "length": 101},
    ):
        with pytest.raises(MlflowException, match="invalid request"):
            model.predict(pd.DataFrame([bad]))


@pytest.mark.slow
def test_concurrent_predict_calls_share_a_batch_and_keep_their_seeds(champion_uri: str) -> None:
    model = mlflow.pyfunc.load_model(champion_uri)
    rows = [{"prompt": "abc"[: 1 + n % 3], "length": 30 + 6 * n, "seed": n} for n in range(12)]
    alone = [model.predict(pd.DataFrame([row]))[0] for row in rows]
    onednn = torch.backends.mkldnn.enabled
    seen: set[bool] = set()
    stop = threading.Event()

    def watch() -> None:  # nothing may flip process-wide switches while requests run
        while not stop.is_set():
            seen.add(torch.backends.mkldnn.enabled)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with ThreadPoolExecutor(len(rows)) as pool:
        together = list(pool.map(lambda row: model.predict(pd.DataFrame([row]))[0], rows))
    stop.set()
    watcher.join()
    assert together == alone and seen == {onednn}


@pytest.mark.slow
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
    served = mlflow.pyfunc.load_model(champion_uri).predict(
        pd.DataFrame([{"prompt": "ab", "length": 40, "seed": 5}])
    )
    assert first == f"ab{served[0]}\n"
    missing = run(
        ["charlm", "generate", "--model", "models:/nothing@champion", "--prompt", "a"],
        tmp_path,
        env=env,
        check=False,
    )
    assert (
        missing.returncode == 2
        and "cannot load from MLflow" in missing.stderr
        and "Traceback" not in missing.stderr
    )
    bad = run([*cmd[:-2], "--temperature", "0"], tmp_path, env=env, check=False)
    assert bad.returncode == 2 and "temperature: must be > 0" in bad.stderr


@pytest.mark.slow
def test_charlm_serve_answers_concurrent_invocations(champion_uri: str, tmp_path: Path) -> None:
    port = free_port()
    cmd = ["charlm", "serve", "--model", champion_uri, "--port", str(port)]
    with background_server(cmd, tmp_path, f"http://127.0.0.1:{port}/ping"):
        url = f"http://127.0.0.1:{port}/invocations"
        request = {"dataframe_records": [{"prompt": "abc", "length": 25, "seed": 11}]}
        status, body = http_json(url, request)
        assert status == 200
        (text,) = body["predictions"]
        assert len(text) == 25 and set(text) <= set(VOCAB.itos[1:])
        assert http_json(url, request)[1] == body  # the seed is honoured
        status, body = http_json(url, {"dataframe_records": [{"prompt": "abc", "length": 10**6}]})
        assert status == 400 and "length: at most 100 per request" in json.dumps(body)
        assert http_json(url, request)[0] == 200  # still serving after a bad request

        rows = [{"prompt": "ab", "length": 60, "seed": n} for n in range(8)]
        alone = [http_json(url, {"dataframe_records": [row]})[1]["predictions"][0] for row in rows]
        bad = {"dataframe_records": [{"prompt": "xyz", "length": 60}]}
        with ThreadPoolExecutor(len(rows) + 2) as pool:
            answers = list(
                pool.map(
                    lambda r: http_json(url, r), [*({"dataframe_records": [row]} for row in rows), bad, bad]
                )
            )
        assert [a[1]["predictions"][0] for a in answers[:-2]] == alone  # batched with each other
        assert [a[0] for a in answers[-2:]] == [400, 400]

        # On one keep-alive connection, no request waits for a delayed ACK (~40 ms each) behind
        # Nagle's algorithm, as they would under uvicorn's own loop with several workers.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        took = []
        for _ in range(7):
            start = time.monotonic()
            conn.request("GET", "/ping")
            conn.getresponse().read()
            took.append(time.monotonic() - start)
        conn.close()
        assert sorted(took)[3] < 0.03, took


def test_serve_command_sizes_workers_and_threads_to_the_cores(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    cmd, env = serve_command("models:/charlm@champion", "127.0.0.1", 5001)
    assert cmd[cmd.index("-w") + 1] == "4" and env["OMP_NUM_THREADS"] == "1"
    assert env["UVICORN_LOOP"] == "charlm_scoring_loop:ScoringLoop"  # read by the server's uvicorn
    assert (
        cmd[cmd.index("-m", 3) + 1] == "models:/charlm@champion" and cmd[cmd.index("-h") + 1] == "127.0.0.1"
    )
    cmd, env = serve_command("models:/charlm/2", "127.0.0.1", 5001, threads=2)
    assert cmd[cmd.index("-w") + 1] == "2" and env["OMP_NUM_THREADS"] == "2"
    assert capsys.readouterr().err == ""
    serve_command("models:/charlm/2", "127.0.0.1", 5001, workers=3, threads=2)
    assert "3 workers x 2 torch threads oversubscribe 4 cores" in capsys.readouterr().err
