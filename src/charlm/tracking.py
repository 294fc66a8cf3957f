"""MLflow tracking: the store, the runs each stage logs to, and how they end.

A training run's metrics wait in `RunTracker` and go to MLflow at each flush (every checkpoint).
Flushing only at checkpoints keeps MLflow consistent with the resumable state: after a crash, the
resumed run continues from exactly the steps MLflow already holds. Later stages log a model's
results to its training run (`model_run`); every run a stage creates is ended as the stage ends:
FINISHED, KILLED on an interrupt, FAILED on an error (`ending`).

Tracking URI: `MLFLOW_TRACKING_URI` when set, else the embedded SQLite database `mlflow.db` at the
workspace root, as an absolute URI (DVC runs queued experiments in a temporary copy and tells
stages the real root in `DVC_ROOT`).
"""

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charlm import io
from charlm.errors import CharlmError, TrainingInterrupted

if TYPE_CHECKING:  # importing MLflow takes seconds: stages import it only when they track
    from mlflow import MlflowClient

DB_FILE = "mlflow.db"
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
# Fail fast on an unreachable server: MLflow's own defaults retry for minutes.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def workspace_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{workspace_root() / DB_FILE}"


def connect(uri: str | None = None) -> "MlflowClient":
    """An MlflowClient for `uri`, checked to answer; the SQLite schema is created under a lock.

    Two processes creating a new SQLite database at once corrupt it, so the first access (which
    creates and migrates the schema) happens while holding an exclusive lock beside the file.
    """
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import mlflow

    uri = uri or tracking_uri()
    try:
        # Building the client already opens (and on first use migrates) the store.
        with store_lock(uri):
            client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)
    except Exception as err:  # MLflow raises many types here: connection, HTTP, SQL errors
        raise CharlmError(
            f"MLflow tracking at {uri} is unreachable or unusable: {_first_line(err)}"
        ) from None
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return client


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise work on an embedded SQLite store across processes (schema creation, registry
    decisions); a tracking server serves its clients itself, so there is nothing to hold for it."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with io.file_lock(db.with_name(db.name + ".lock")):
        yield


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


def experiment_id(client: "MlflowClient", name: str) -> str:
    """The experiment's id, created if needed and marked as model training (MLflow 3's UI otherwise
    opens an experiment on its GenAI overview, with the runs one click further)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, tags={EXPERIMENT_KIND: MODEL_TRAINING})
    if EXPERIMENT_KIND not in experiment.tags:  # created before the tag existed
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
    return experiment.experiment_id


@contextmanager
def ending(client: "MlflowClient", run_id: str) -> Iterator[None]:
    """End run `run_id` with the block: FINISHED, KILLED on an interrupt, FAILED on an error."""
    try:
        yield
    except (KeyboardInterrupt, TrainingInterrupted):
        client.set_terminated(run_id, status="KILLED")
        raise
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)


@contextmanager
def model_run(
    client: "MlflowClient", run_id: str | None, experiment: str, run_name: str, tags: dict[str, str]
) -> Iterator[tuple[str, bool]]:
    """The run to log a model's later results to, and whether it was created here.

    That is its training run when this store has it, left as it is. After `dvc pull` or on a fresh
    tracking store the training run is elsewhere; then a new run, tagged so, lives as the block.
    """
    from mlflow.exceptions import MlflowException

    if run_id:
        try:
            client.get_run(run_id)
        except MlflowException:
            pass
        else:
            yield run_id, False
            return
    note = {
        "charlm.training_run": run_id or "unknown",
        "charlm.note": "training run not in this tracking store",
    }
    created = client.create_run(experiment_id(client, experiment), run_name=run_name, tags={**tags, **note})
    with ending(client, created.info.run_id):
        yield created.info.run_id, True


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def owner_tags() -> dict[str, str]:
    """Which process is writing a run, so a later start can tell a live run from an orphan."""
    return {"charlm.host": socket.gethostname(), "charlm.pid": str(os.getpid())}


def end_orphaned_runs(client: "MlflowClient", experiment: str) -> list[str]:
    """Mark KILLED the runs this host left RUNNING from processes that no longer exist."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    host = socket.gethostname()
    ended = []
    for run in client.search_runs([found.experiment_id], filter_string="attributes.status = 'RUNNING'"):
        tags = run.data.tags
        pid = tags.get("charlm.pid", "")
        if tags.get("charlm.host") == host and pid.isdigit() and not _process_alive(int(pid)):
            client.set_terminated(run.info.run_id, status="KILLED")
            ended.append(run.info.run_id)
    return ended


def log_metrics(client: "MlflowClient", run_id: str, metrics: dict[str, Any], step: int = 0) -> None:
    """Log the numeric entries of `metrics` in one batch (MLflow splits it as its limits need)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    numbers = [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, int | float)]
    client.log_batch(run_id, metrics=numbers)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def stage_tags(stage: str) -> dict[str, str]:
    """Tags that join an MLflow run to its code and DVC stage (and experiment, when queued)."""
    tags = {"dvc.stage": stage, "git.commit": git_commit()}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


class RunTracker:
    """The MLflow run of one model's training; metrics wait here until the next checkpoint."""

    def __init__(self, client: "MlflowClient", run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self._pending: list[Any] = []

    @classmethod
    def start(
        cls,
        client: "MlflowClient",
        experiment: str,
        run_name: str,
        params: dict[str, Any],
        tags: dict[str, str],
    ) -> "RunTracker":
        from mlflow.entities import Param

        run = client.create_run(
            experiment_id(client, experiment), run_name=run_name, tags={**tags, **owner_tags()}
        )
        client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        return cls(client, run.info.run_id)

    @classmethod
    def resume(cls, client: "MlflowClient", run_id: str) -> "RunTracker":
        """Continue the run a checkpoint recorded (it may have been left RUNNING by a killed process)."""
        client.update_run(run_id, status="RUNNING")
        for key, value in owner_tags().items():
            client.set_tag(run_id, key, value)
        return cls(client, run_id)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(key, value, now, step) for key, value in metrics.items()]

    def flush(self) -> None:
        """Send the pending metrics to MLflow."""
        if self._pending:
            self.client.log_batch(self.run_id, metrics=self._pending)
            self._pending = []

    def finish(self, summary: dict[str, float], files: list[Path]) -> None:
        """Flush, then log the summary metrics and the DVC metrics and plots files."""
        self.flush()
        log_metrics(self.client, self.run_id, summary)
        for path in files:
            # Keep the DVC layout (metrics/train/x.json, plots/val/x.csv): names repeat across folders.
            folder = path.parent.as_posix() if not path.is_absolute() else path.parent.name
            self.client.log_artifact(self.run_id, str(path), artifact_path=folder)
