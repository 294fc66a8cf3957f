"""tracking: URI resolution, one-time store creation, fail-fast on a dead server, how runs end."""

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from charlm.errors import CharlmError, TrainingInterrupted
from charlm.tracking.runs import RunTracker, StageTracking, end_orphaned_runs, ending
from charlm.tracking.store import HTTP_DEFAULTS, connect, experiment_id, first_write, tracking_uri
from charlm.tracking.tags import owner_tags
from tests.helpers import free_port


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
    with pytest.raises(CharlmError, match=rf"MLflow tracking at {uri} is unreachable"):
        connect(uri)
    assert {key: os.environ[key] for key in HTTP_DEFAULTS} == HTTP_DEFAULTS  # bounded retries and timeout


def test_tracker_sends_metrics_at_flush_and_logs_files(tmp_path: Path, mlflow_client) -> None:  # type: ignore[no-untyped-def]
    tracking = StageTracking(mlflow_client, "exp", {"s": "1"})
    with RunTracker.start(tracking, "m", {"a.b": 1}, {"k": "v"}) as tracker:
        tracker.log(1, {"loss": 2.5})
        assert mlflow_client.get_metric_history(tracker.run_id, "loss") == []  # waits for the checkpoint
        tracker.flush()
        tracker.log(2, {"loss": 2.0, "bpc": 3.0})
        (tmp_path / "metrics.json").write_text("{}")
        tracker.finish({"best": 1.5}, [tmp_path / "metrics.json"])
    run = mlflow_client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics == {"loss": 2.0, "bpc": 3.0, "best": 1.5}
    assert [m.step for m in mlflow_client.get_metric_history(tracker.run_id, "loss")] == [1, 2]
    assert run.data.params == {"a.b": "1"} and run.data.tags["k"] == "v" and run.data.tags["s"] == "1"
    assert [a.path for a in mlflow_client.list_artifacts(tracker.run_id, tmp_path.name)] == [
        f"{tmp_path.name}/metrics.json"
    ]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (None, "FINISHED"),
        (TrainingInterrupted(15), "KILLED"),
        (KeyboardInterrupt(), "KILLED"),
        (OSError(), "FAILED"),
    ],
)
def test_a_run_ends_as_its_block_does(mlflow_client, error: BaseException | None, status: str) -> None:  # type: ignore[no-untyped-def]
    run_id = mlflow_client.create_run(experiment_id(mlflow_client, "exp")).info.run_id
    with contextlib.suppress(type(error) if error else ()), ending(mlflow_client, run_id):
        if error:
            raise error
    assert mlflow_client.get_run(run_id).info.status == status
    made = []
    tracking = StageTracking(mlflow_client, "exp", {})
    # A stage's run, and the training run as it starts and as a checkpoint resumes it.
    openings = [
        lambda: tracking.new_run("s"),
        lambda: RunTracker.start(tracking, "m", {"a": 1}, {}),
        lambda: RunTracker.resume(mlflow_client, made[1].run_id),
    ]
    for opening in openings:
        with contextlib.suppress(type(error) if error else ()), opening() as run:
            made.append(run)
            if error:
                raise error
    run_ids = [made[0], made[1].run_id, made[2].run_id]
    assert [mlflow_client.get_run(run_id).info.status for run_id in run_ids] == [status] * 3


def test_model_run_reuses_the_training_run_or_makes_one(mlflow_client) -> None:  # type: ignore[no-untyped-def]
    training = mlflow_client.create_run(experiment_id(mlflow_client, "exp")).info.run_id
    tracking = StageTracking(mlflow_client, "exp", {"k": "v"})
    with tracking.model_run(training, "m (evaluation)") as (run_id, created):
        assert (run_id, created) == (training, False)
    assert mlflow_client.get_run(training).info.status == "RUNNING"  # not this stage's to end
    with tracking.model_run("gone", "m (evaluation)") as (run_id, created):
        assert created and run_id != "gone"
    made = mlflow_client.get_run(run_id)
    assert made.info.status == "FINISHED" and made.data.tags["charlm.training_run"] == "gone"
    assert made.data.tags["k"] == "v"


def test_orphaned_running_runs_are_marked_killed(mlflow_client) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    exp = experiment_id(mlflow_client, "exp")
    orphan = mlflow_client.create_run(exp, tags={**owner_tags(), "charlm.pid": str(dead.pid)}).info.run_id
    alive = mlflow_client.create_run(exp, tags=owner_tags()).info.run_id  # this very process
    assert end_orphaned_runs(mlflow_client, "exp") == [orphan]
    assert mlflow_client.get_run(orphan).info.status == "KILLED"
    assert mlflow_client.get_run(alive).info.status == "RUNNING"


def test_an_experiment_created_elsewhere_meanwhile_is_found(mlflow_client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Another machine creates the experiment between this process's lookup and its create.
    elsewhere = mlflow_client.create_experiment("exp")
    lookups: list[str] = []
    real_lookup = mlflow_client.get_experiment_by_name

    def stale_first(name: str):  # type: ignore[no-untyped-def]
        lookups.append(name)
        return None if len(lookups) == 1 else real_lookup(name)

    monkeypatch.setattr(mlflow_client, "get_experiment_by_name", stale_first)
    assert experiment_id(mlflow_client, "exp") == elsewhere and len(lookups) == 2
    assert mlflow_client.get_experiment(elsewhere).tags["mlflow.experimentKind"] == "custom_model_development"


def test_a_first_write_that_clashes_is_made_once_more_and_a_second_clash_is_raised() -> None:
    from mlflow.exceptions import MlflowException

    calls: list[int] = []

    def clashes(times: int) -> Callable[[], None]:
        def write() -> None:
            calls.append(1)
            if len(calls) <= times:
                raise MlflowException("UNIQUE constraint failed: datasets.experiment_id, datasets.name")

        return write

    first_write(clashes(1))  # another process inserted the row between this one's read and insert
    assert len(calls) == 2
    calls.clear()
    with pytest.raises(MlflowException, match="UNIQUE constraint failed"):
        first_write(clashes(2))  # not a clash of first writes: said, not hidden
    assert len(calls) == 2
