"""MLflow runs: the ones each stage logs to (`StageTracking`), a training run's metrics held until the
next checkpoint flushes them (`RunTracker`), and how every run a stage creates ends (`ending`)."""

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charlm.errors import TrainingInterrupted
from charlm.params.base import TrackingConfig
from charlm.tracking import tags as tag
from charlm.tracking.store import connect, experiment_id, first_write

if TYPE_CHECKING:
    from mlflow import MlflowClient


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


# MLflow's dataset contexts, by the split a run reads.
CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
DIGEST_CHARS = 36  # what MLflow's datasets table holds of a digest


@dataclass(frozen=True)
class DatasetRef:
    """A split as an MLflow dataset: the UI's Datasets, filterable by name and digest (the first
    `DIGEST_CHARS` of the encoded split's sha256, which the run's tags hold in full)."""

    split: str
    sha256: str  # of the encoded split
    source: str  # where it comes from (`DataReport.source`)


@dataclass(frozen=True)
class StageTracking:
    """How a stage reaches MLflow: the store, the experiment, and the tags of every run it makes."""

    client: "MlflowClient"
    experiment: str
    tags: dict[str, str]

    @classmethod
    def open(cls, config: TrackingConfig, stage: str, name: str | None = None) -> "StageTracking":
        """Stage `stage` (of the entry `name`) on the store the environment names, in `config.experiment`."""
        return cls(connect(), config.experiment, tag.stage_tags(stage, name))

    @contextmanager
    def new_run(self, run_name: str, **tags: str) -> Iterator[str]:
        """A new run (with these `tags` too) that lives as the block does and ends as it ends."""
        eid = experiment_id(self.client, self.experiment)
        run_id = self.client.create_run(eid, run_name=run_name, tags=self.tags | tags).info.run_id
        with ending(self.client, run_id):
            yield run_id

    def log_datasets(self, run_id: str, datasets: list[DatasetRef]) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [
            DatasetInput(
                Dataset(name=d.split, digest=d.sha256[:DIGEST_CHARS], source_type="local", source=d.source),
                tags=[InputTag("mlflow.data.context", CONTEXTS[d.split])],
            )
            for d in datasets
        ]
        first_write(lambda: self.client.log_inputs(run_id, datasets=inputs))

    @contextmanager
    def model_run(self, run_id: str | None, run_name: str) -> Iterator[tuple[str, bool]]:
        """The run to log a model's later results to, and whether it was created here: its training
        run when this store has it, left as it is; else (after `dvc pull`, or on a fresh tracking
        store) a new run, tagged so, that lives as the block."""
        from mlflow.exceptions import MlflowException

        if run_id:
            try:
                self.client.get_run(run_id)
            except MlflowException:
                pass
            else:
                yield run_id, False
                return
        note = {tag.TRAINING_RUN: run_id or "unknown", tag.NOTE: "training run not in this tracking store"}
        with self.new_run(run_name, **note) as created:
            yield created, True


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def end_orphaned_runs(client: "MlflowClient", experiment: str) -> list[str]:
    """Mark KILLED the runs this host left RUNNING from processes that no longer exist."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    host = socket.gethostname()
    ended = []
    for run in client.search_runs([found.experiment_id], filter_string="attributes.status = 'RUNNING'"):
        pid = run.data.tags.get(tag.PID, "")
        if run.data.tags.get(tag.HOST) == host and pid.isdigit() and not _process_alive(int(pid)):
            client.set_terminated(run.info.run_id, status="KILLED")
            ended.append(run.info.run_id)
    return ended


@contextmanager
def system_metrics(run_id: str, node: str | None = None) -> Iterator[None]:
    """MLflow's system metrics (CPU, memory, disk, network, GPUs where there are) on the run while
    the block runs, under `system/<node>/` when `node` names a node of several."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, node_id=node)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def metrics_at(step: int, metrics: dict[str, Any]) -> list[Any]:
    """MLflow metrics of the numeric entries of `metrics`, logged at `step` now."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in metrics.items() if isinstance(v, int | float)]


def log_metrics(client: "MlflowClient", run_id: str, metrics: dict[str, Any]) -> None:
    """Log the numeric entries of `metrics` in one batch (MLflow splits it as its limits need)."""
    client.log_batch(run_id, metrics=metrics_at(0, metrics))


class RunTracker:
    """The MLflow run of one model's training; metrics wait here until the next checkpoint."""

    def __init__(self, client: "MlflowClient", run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self._pending: list[Any] = []

    @classmethod
    @contextmanager
    def start(
        cls, tracking: StageTracking, run_name: str, params: dict[str, Any], tags: dict[str, str]
    ) -> Iterator["RunTracker"]:
        """A new run with these params and tags, ended as the block ends (`StageTracking.new_run`)."""
        from mlflow.entities import Param

        with tracking.new_run(run_name, **tags, **tag.owner_tags()) as run_id:
            tracking.client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
            yield cls(tracking.client, run_id)

    @classmethod
    @contextmanager
    def resume(cls, client: "MlflowClient", run_id: str) -> Iterator["RunTracker"]:
        """Continue the run a checkpoint recorded (it may have been left RUNNING by a killed
        process), ended as the block ends."""
        client.update_run(run_id, status="RUNNING")
        with ending(client, run_id):
            for key, value in tag.owner_tags().items():
                client.set_tag(run_id, key, value)
            yield cls(client, run_id)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self._pending += metrics_at(step, metrics)

    def flush(self) -> None:
        if self._pending:
            self.client.log_batch(self.run_id, metrics=self._pending)
            self._pending = []

    def finish(self, figures: dict[str, Any], files: list[Path]) -> None:
        """Flush, then log the training summary's `figures` (numbers as metrics, the rest as `charlm.<name>`
        tags: what the figures were computed on) and the DVC metrics and plots files."""
        self.flush()
        log_metrics(self.client, self.run_id, figures)
        for key, value in figures.items():
            if isinstance(value, str):
                self.client.set_tag(self.run_id, tag.trained_on(key), value)
        for path in files:
            # Keep the DVC layout (metrics/train/x.json, plots/val/x.csv): names repeat across folders.
            folder = path.parent.as_posix() if not path.is_absolute() else path.parent.name
            self.client.log_artifact(self.run_id, str(path), artifact_path=folder)
