"""tracking: URI resolution, one-time store creation, fail-fast on a dead server, curve files."""

import time
from pathlib import Path

import pytest

from charlm.errors import CharlmError
from charlm.tracking import RunTracker, connect, tracking_uri
from tests.conftest import free_port


def test_default_uri_is_absolute_and_honours_dvc_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("DVC_ROOT", "/srv/project")  # a queued experiment's temp copy knows its root
    assert tracking_uri() == "sqlite:////srv/project/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert tracking_uri() == "http://mlflow.internal:5000"


def test_unreachable_server_fails_fast_naming_the_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    for key in (
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
    ):
        monkeypatch.delenv(key, raising=False)  # the project's fail-fast defaults apply
    uri = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    with pytest.raises(CharlmError, match=rf"MLflow tracking at {uri} is unreachable"):
        connect(uri)
    assert time.monotonic() - start < 30


def test_tracker_writes_curves_and_metrics(tmp_path: Path, mlflow_client) -> None:  # type: ignore[no-untyped-def]
    curves = {tmp_path / "train.csv": ["loss"], tmp_path / "val.csv": ["bpc"]}
    tracker = RunTracker.start(mlflow_client, "exp", "m", {"a.b": 1}, {"k": "v"}, curves)
    tracker.log(1, {"loss": 2.5})
    tracker.log(2, {"loss": 2.0, "bpc": 3.0})
    tracker.finish({"best": 1.5}, tmp_path / "metrics.json")
    assert (tmp_path / "train.csv").read_text() == "step,loss\n1,2.5\n2,2.0\n"
    assert (tmp_path / "val.csv").read_text() == "step,bpc\n2,3.0\n"
    run = mlflow_client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics == {"loss": 2.0, "bpc": 3.0, "best": 1.5}
    assert run.data.params == {"a.b": "1"}


def test_orphaned_running_runs_are_marked_killed(mlflow_client) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from charlm.tracking import end_orphaned_runs, experiment_id, owner_tags

    dead = subprocess.Popen(["true"])
    dead.wait()
    exp = experiment_id(mlflow_client, "exp")
    orphan = mlflow_client.create_run(exp, tags={**owner_tags(), "charlm.pid": str(dead.pid)}).info.run_id
    alive = mlflow_client.create_run(exp, tags=owner_tags()).info.run_id  # this very process
    assert end_orphaned_runs(mlflow_client, "exp") == [orphan]
    assert mlflow_client.get_run(orphan).info.status == "KILLED"
    assert mlflow_client.get_run(alive).info.status == "RUNNING"
