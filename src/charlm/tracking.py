"""Run tracking: MLflow runs and DVC metrics/plots files, fed by one `log()` call per metric.

The training loop reports a metric once; `RunTracker` records it in memory, appends it to the DVC
plots files and, at each flush (every checkpoint), sends it to MLflow. Flushing only at
checkpoints keeps MLflow consistent with the resumable state: after a crash, the resumed run
continues from exactly the steps MLflow already holds.

Tracking URI: `MLFLOW_TRACKING_URI` when set, else the embedded SQLite database `mlflow.db` at the
workspace root, as an absolute URI (DVC runs queued experiments in a temporary copy and tells
stages the real root in `DVC_ROOT`).
"""

import csv
import io as _io
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from charlm import io
from charlm.errors import CharlmError

DB_FILE = "mlflow.db"
# Fail fast on an unreachable server: MLflow's own defaults retry for minutes.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call


def workspace_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{workspace_root() / DB_FILE}"


def connect(uri: str | None = None) -> Any:
    """An MlflowClient for `uri`, checked to answer; the SQLite schema is created under a lock.

    Two processes creating a new SQLite database at once corrupt it, so the first access (which
    creates and migrates the schema) happens while holding an exclusive lock beside the file.
    """
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = uri or tracking_uri()
    try:
        # Building the client already opens (and on first use migrates) the store.
        with store_lock(uri):
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
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


def experiment_id(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name)


def attach_run(
    client: Any, run_id: str | None, experiment: str, run_name: str, tags: dict[str, str]
) -> tuple[str, bool]:
    """The run to log a model's later results to: its training run when this store has it.

    After `dvc pull` or a fresh tracking store the training run is elsewhere; then a new run is
    created and tagged so. Returns (run id, whether it was created here and must be ended).
    """
    from mlflow.exceptions import MlflowException

    if run_id:
        try:
            client.get_run(run_id)
            return run_id, False
        except MlflowException:
            pass
    note = {
        "charlm.training_run": run_id or "unknown",
        "charlm.note": "training run not in this tracking store",
    }
    run = client.create_run(experiment_id(client, experiment), run_name=run_name, tags={**tags, **note})
    return run.info.run_id, True


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


def end_orphaned_runs(client: Any, experiment: str) -> list[str]:
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


def log_metrics(client: Any, run_id: str, metrics: dict[str, Any], step: int = 0) -> None:
    """Log the numeric entries of `metrics` in one batch."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    numbers = [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, int | float)]
    for i in range(0, len(numbers), MAX_BATCH):
        client.log_batch(run_id, metrics=numbers[i : i + MAX_BATCH])


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


def write_curves(path: Path, columns: list[str], rows: list[dict[str, float]]) -> None:
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    io.write_text(path, buffer.getvalue())


class RunTracker:
    """One MLflow run plus the DVC curves of one model's training.

    `curves` maps each DVC plots file to the metric names it holds (its first column is `step`);
    a metric logged at a step goes to the file that lists it.
    """

    def __init__(
        self, client: Any, run_id: str, curves: dict[Path, list[str]], history: dict[str, list] | None = None
    ):
        self.client = client
        self.run_id = run_id
        self.curves = curves
        # metric name -> [[step, value], ...]; JSON-friendly so checkpoints can carry it.
        self.history: dict[str, list[list[float]]] = history or {}
        self._pending: list[Any] = []

    @classmethod
    def start(
        cls,
        client: Any,
        experiment: str,
        run_name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        curves: dict[Path, list[str]],
    ) -> "RunTracker":
        run = client.create_run(
            experiment_id(client, experiment), run_name=run_name, tags={**tags, **owner_tags()}
        )
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            client.log_batch(run.info.run_id, params=items[i : i + 100])
        return cls(client, run.info.run_id, curves)

    @classmethod
    def resume(cls, client: Any, state: dict[str, Any], curves: dict[Path, list[str]]) -> "RunTracker":
        """Continue the run a checkpoint recorded (it may have been left RUNNING by a killed process)."""
        client.update_run(state["run_id"], status="RUNNING")
        for key, value in owner_tags().items():
            client.set_tag(state["run_id"], key, value)
        return cls(client, state["run_id"], curves, state["history"])

    def state(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "history": self.history}

    def log(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for key, value in metrics.items():
            self.history.setdefault(key, []).append([step, value])
            self._pending.append(Metric(key, value, now, step))

    def flush(self) -> None:
        """Send pending metrics to MLflow and rewrite the curve files from the full history."""
        for i in range(0, len(self._pending), MAX_BATCH):
            self.client.log_batch(self.run_id, metrics=self._pending[i : i + MAX_BATCH])
        self._pending = []
        for path, names in self.curves.items():
            rows: dict[int, dict[str, float]] = {}
            for name in names:
                for step, value in self.history.get(name, []):
                    rows.setdefault(int(step), {"step": int(step)})[name] = value
            write_curves(path, ["step", *names], [rows[s] for s in sorted(rows)])

    def finish(self, summary: dict[str, float], metrics_path: Path, status: str = "FINISHED") -> None:
        """Flush, write the DVC metrics file, log the summary and files, and close the run."""
        self.flush()
        io.write_json(metrics_path, summary)
        log_metrics(self.client, self.run_id, summary)
        for path in [metrics_path, *self.curves]:
            # Keep the DVC layout (metrics/train/x.json, plots/val/x.csv): names repeat across folders.
            folder = path.parent.as_posix() if not path.is_absolute() else path.parent.name
            self.client.log_artifact(self.run_id, str(path), artifact_path=folder)
        self.client.set_terminated(self.run_id, status=status)

    def end(self, status: str) -> None:
        """Close the run without a summary (KILLED, FAILED), keeping what was flushed."""
        try:
            self.flush()
        finally:
            self.client.set_terminated(self.run_id, status=status)
