"""launcher: `charlm serve` sizes workers and torch threads to the cores, and runs on the scoring loop."""

import os

import pytest

from charlm.serving.launcher import serve_command


def test_serve_command_sizes_workers_and_threads_to_the_cores(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    cmd, env = serve_command("models:/charlm@champion", "127.0.0.1", 5001, "sqlite:////tmp/x.db")
    assert cmd[cmd.index("-w") + 1] == "4" and env["OMP_NUM_THREADS"] == "1"
    assert env["UVICORN_LOOP"] == "charlm_scoring_loop:ScoringLoop"  # read by the server's uvicorn
    assert env["MLFLOW_TRACKING_URI"] == "sqlite:////tmp/x.db"
    assert (
        cmd[cmd.index("-m", 3) + 1] == "models:/charlm@champion" and cmd[cmd.index("-h") + 1] == "127.0.0.1"
    )
    cmd, env = serve_command("models:/charlm/2", "127.0.0.1", 5001, "x", threads=2)
    assert cmd[cmd.index("-w") + 1] == "2" and env["OMP_NUM_THREADS"] == "2"
    assert capsys.readouterr().err == ""
    serve_command("models:/charlm/2", "127.0.0.1", 5001, "x", workers=3, threads=2)
    assert "3 workers x 2 torch threads oversubscribe 4 cores" in capsys.readouterr().err
