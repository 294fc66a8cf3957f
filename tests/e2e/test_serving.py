"""Serving, as a user meets it: the registered champion loads without pickle and generates, refuses
bad requests by name, batches concurrent callers (in-process and over HTTP), streams from
`charlm generate`, and serves over HTTP with `charlm serve`."""

import re
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
    sse_events,
    step_counter,
)

pytestmark = pytest.mark.slow

LETTERS = set(small_vocab().itos[1:])


@pytest.fixture
def champion_uri(tmp_path: Path, mlflow_client: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    # An adaptive head (small_vocab's 12 characters in a shortlist of 4 and two clusters): the
    # served paths read its scores as they read a softmax's (the portable tests serve one).
    register_candidate(mlflow_client, saved_candidate(tmp_path, 1, val_bpc=2.0, head_cutoffs=(4, 8)))
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return "models:/charlm@champion"


def test_pyfunc_round_trip_without_pickle(champion_uri: str) -> None:
    model = mlflow.pyfunc.load_model(champion_uri)
    rows = [
        {"prompt": "abc", "length": 30, "seed": 3},
        {"prompt": "h" * 40, "length": 5, "seed": 4},
    ]  # in slices
    out = model.predict(rows)
    assert [len(t) for t in out] == [30, 5] and set("".join(out)) <= LETTERS
    assert model.predict(rows) == out  # seeded
    assert len(model.predict([{"prompt": "a"}])[0]) == 20  # the logged default length
    for bad, message in (
        ({"prompt": "xyz", "seed": 1}, "not in the model's vocabulary"),
        ({"prompt": "a", "temperature": 0.0}, "temperature: must be >= 0.001"),
        ({"prompt": "a", "length": 100}, "max_request_chars: a request asks for at most 100 characters"),
        ({"prompt": "a", "lenght": 5}, "lenght: unknown key (did you mean 'length'?)"),
        ({"prompt": None}, "prompt"),
    ):
        with pytest.raises(MlflowException) as info:
            model.predict([bad])
        assert message in str(info.value), (bad, str(info.value))


def test_concurrent_predict_calls_share_a_batch_and_keep_their_seeds(champion_uri: str) -> None:
    model = mlflow.pyfunc.load_model(champion_uri)
    rows = [{"prompt": "abc"[: 1 + n % 3], "length": 30 + 6 * n, "seed": n} for n in range(12)]
    steps = step_counter(model.unwrap_python_model().batcher)
    alone = [model.predict([row])[0] for row in rows]
    steps_alone = steps()
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
    assert steps() - steps_alone < steps_alone / 2


def test_charlm_generate_streams_from_the_registry(
    champion_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cmd = ["charlm", "generate", "--model", champion_uri, "--prompt", "ab", "--length", "40", "--seed", "5"]
    first = run(cmd, tmp_path).stdout
    assert first.startswith("ab") and len(first.rstrip("\n")) == 42
    assert run(cmd, tmp_path).stdout == first
    # The command samples as the served model does: its logged defaults fill what is not given.
    served = mlflow.pyfunc.load_model(champion_uri).predict([{"prompt": "ab", "length": 40, "seed": 5}])
    assert first == f"ab{served[0]}\n"

    def refused(*argv: str) -> str:
        """What the command says when it refuses: its exit status must be 2 and its message one
        line (run in this process: the command's code, without a second start of torch and MLflow)."""
        from charlm.cli import main

        with pytest.raises(SystemExit) as done:
            main(list(argv))
        err = capsys.readouterr().err
        assert done.value.code == 2 and "Traceback" not in err, err
        return err

    assert "cannot load from MLflow" in refused(
        "generate", "--model", "models:/nothing@champion", "--prompt", "a"
    )
    # The command's one-line errors are the served model's.
    for option, value, message in (
        ("--temperature", "0", "error: temperature: must be >= 0.001, got 0.0"),
        ("--temperature", "inf", "error: temperature: must be a finite number, got inf"),
        ("--seed", str(2**64), "error: seed: must be < 9223372036854775808, got 18446744073709551616"),
        (
            "--prompt",
            "a\udcff",
            "error: prompt: not valid Unicode: '\\udcff' at character 1 (surrogates not allowed)",
        ),
    ):
        assert refused(*cmd[1:-2], option, value).splitlines() == [message]


def test_charlm_serve_answers_concurrent_invocations_and_refuses_bad_requests_by_name(
    champion_uri: str, tmp_path: Path
) -> None:
    port = free_port()
    cmd = ["charlm", "serve", "--uri", champion_uri, "--port", str(port)]
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
            (
                {"inputs": [{"prompt": "a" * 51, "length": 5}]},
                "max_prompt_chars: a prompt has at most 50 characters, got 51",
            ),
            ({"inputs": []}, "inputs: a request asks for at least one text, got none"),
            (
                {"inputs": [{"prompt": "ab", "seed": 2**64}]},
                "seed: must be < 9223372036854775808, got 18446744073709551616",
            ),
            (
                {"inputs": [{"prompt": "ab", "seed": -(2**70)}]},
                "seed: must be >= 0, got -1180591620717411303424",
            ),
            (
                {"inputs": [{"prompt": "a\ud800", "unknown": "unk"}]},
                "prompt: not valid Unicode: '\\ud800' at character 1",
            ),
            (
                {"inputs": [{"prompt": "ab", "temperature": 1e-300}]},
                "temperature: must be >= 0.001, got 1e-300",
            ),
            (
                {"inputs": [{"prompt": "ab", "temperature": float("inf")}]},
                "temperature: must be a finite number, got inf",
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
        # A prompt in the other normal form of the corpus's é is put in the corpus's form first.
        status, body = http_json(url, {"inputs": [{"prompt": "ae\u0301", "length": 5}]})
        assert status == 200 and len(body["predictions"][0]) == 5

        rows = [{"prompt": "ab", "length": 60, "seed": n} for n in range(8)]
        alone = [http_json(url, {"inputs": [row]})[1]["predictions"][0] for row in rows]
        bad = {"inputs": [{"prompt": "xyz", "length": 60}]}
        with ThreadPoolExecutor(len(rows) + 2) as pool:
            answers = list(
                pool.map(lambda r: http_json(url, r), [*({"inputs": [row]} for row in rows), bad, bad])
            )
        assert [a[1]["predictions"][0] for a in answers[:-2]] == alone  # seeded texts, batched or not
        assert [a[0] for a in answers[-2:]] == [400, 400]


def until_admitted(url: str, payload: Any, attempts: int = 30) -> tuple[int, Any, Any]:
    """POST as a client should: after a 503, again once Retry-After has passed."""
    for _ in range(attempts):
        status, body, headers = http_call(url, payload)
        if status != 503:
            return status, body, headers
        time.sleep(int(headers["Retry-After"]))
    raise AssertionError(f"still 503 after {attempts} attempts: {body}")


def test_one_client_cannot_stall_the_others(
    tmp_path: Path, mlflow_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A heavy request of long prompts runs one row at a time (its share of a batch of two), each
    prompt fed in slices; a light request joins beside it and is served while it runs; a request
    the worker cannot hold is answered 503 with Retry-After, at once; a prompt over the limit, 400."""
    limits = {
        "max_prompt_chars": 60_000,
        "max_request_chars": 400_000,
        "max_batch_rows": 2,
        "max_request_batch_rows": 1,
        "max_waiting_rows": 3,
        "max_request_rows": 3,
    }
    register_candidate(mlflow_client, saved_candidate(tmp_path, 1, val_bpc=2.0), **limits)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    port = free_port()
    cmd = ["charlm", "serve", "--model", "models:/charlm@champion", "--port", str(port), "--workers", "1"]
    with background_server(cmd, tmp_path, f"http://127.0.0.1:{port}/ping"):
        url = f"http://127.0.0.1:{port}/invocations"
        # Three prompts at the limit and 30,000 characters, one row at a time: seconds of work.
        heavy = {"inputs": [{"prompt": "ab" * 30_000, "length": 10_000, "seed": n} for n in range(3)]}
        with ThreadPoolExecutor(1) as pool:
            heavy_answer = pool.submit(until_admitted, url, heavy)
            # Two rows beside the heavy request's two waiting ones are more than the worker may hold:
            # refused at once, 503, without generating anything. Until then, two short rows are
            # served (the heavy request is not queued yet, or comes back after their 503 to it).
            over = {"inputs": [{"prompt": "a", "length": 5}] * 2}
            while (answer := http_call(url, over))[0] != 503:
                assert answer[0] == 200 and not heavy_answer.done(), answer
            status, body, headers = answer
            # The heavy request's rows are queued: all three, or two once the first has joined.
            assert re.search(r"[23] rows wait to join its batch \(max_waiting_rows 3\)", body["message"]), (
                body
            )
            assert int(headers["Retry-After"]) >= 1 and body["retry_after_s"] == int(headers["Retry-After"])
            # A light request joins the batch beside the heavy one's running row and is done
            # while that one has most of its work ahead. Until the heavy request's first row has
            # joined the batch, its three waiting rows fill the queue: the light one polls.
            light = {"inputs": [{"prompt": "ab", "length": 200, "seed": 1}]}
            for _ in range(200):
                if (answer := http_call(url, light))[0] != 503:
                    break
                time.sleep(0.05)
            status, body, _ = answer
            assert status == 200 and len(body["predictions"][0]) == 200
            assert not heavy_answer.done()
            status, body, _ = heavy_answer.result()
            assert status == 200 and [len(text) for text in body["predictions"]] == [10_000] * 3
            over_limit = {"inputs": [{"prompt": "a" * 60_001, "length": 5}]}
            status, body, _ = http_call(url, over_limit)
            assert (
                status == 400 and "max_prompt_chars: a prompt has at most 60000 characters" in body["message"]
            )
            assert len(body["message"]) < 200  # the refusal's words, not the request's


def test_text_streams_over_http_as_it_is_generated(
    tmp_path: Path, mlflow_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_candidate(mlflow_client, saved_candidate(tmp_path, 1, val_bpc=2.0), max_request_chars=5_000)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    port = free_port()
    cmd = ["charlm", "serve", "--model", "models:/charlm@champion", "--port", str(port), "--workers", "1"]
    with background_server(cmd, tmp_path, f"http://127.0.0.1:{port}/ping"):
        server = f"http://127.0.0.1:{port}"
        row = {"prompt": "ab", "length": 1000, "seed": 5}
        events = sse_events(f"{server}/stream", {"inputs": [row]})
        name, first = next(events)  # the first characters, while the rest are being generated
        rest = list(events)
        assert name == "text" and 0 < len(first["text"]) < 1000 and rest[-1] == ("done", {})
        streamed = first["text"] + "".join(data["text"] for name, data in rest if name == "text")
        (whole,) = http_json(f"{server}/invocations", {"inputs": [row]})[1]["predictions"]
        assert streamed == whole  # seeded: the same characters as predict's

        cli = ["charlm", "generate", "--server", server, "--prompt", "ab", "--length", "1000", "--seed", "5"]
        assert run(cli, tmp_path).stdout == f"ab{whole}\n"
        bad = run([*cli[:-4], "--prompt", "xyz"], tmp_path, check=False)
        assert bad.returncode == 2 and bad.stderr.startswith(f"error: {server}/stream: 400: invalid request")
        assert "not in the model's vocabulary" in bad.stderr and bad.stdout == ""
        status, body = http_json(f"{server}/stream", {"inputs": [{"prompt": "ab", "lenght": 5}]})
        assert status == 400 and "inputs.0.lenght: unknown key" in body["message"]
