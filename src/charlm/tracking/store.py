"""The MLflow store every stage logs to (`MLFLOW_TRACKING_URI`, else `mlflow.db` at the workspace
root, which `DVC_ROOT` names from a queued experiment's temporary copy), and the lock that guards
the creation of an embedded one."""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from charlm.errors import CharlmError
from charlm.files import file_lock
from charlm.tracking.tags import EXPERIMENT_KIND, MODEL_TRAINING

if TYPE_CHECKING:  # importing MLflow takes seconds: stages import it only when they track
    from mlflow import MlflowClient

DB_FILE = "mlflow.db"
# Fail fast on an unreachable server: MLflow's own defaults retry for minutes.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def tracking_uri() -> str:
    root = Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / DB_FILE}"


def connect(uri: str | None = None) -> "MlflowClient":
    """An MlflowClient for `uri` (default: `tracking_uri()`), checked to answer; an embedded store's
    schema is created under `store_lock`."""
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
        raise CharlmError(f"MLflow tracking at {uri} is unreachable or unusable: {first_line(err)}") from None
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return client


def first_write(write: Callable[[], object]) -> None:
    """Make a write that may be the store's first of some row: a SQL store reads, then inserts, so
    two processes' first writes at once can clash on a unique key (a version's tag, a dataset both
    runs log); the second attempt finds the row the other inserted."""
    from mlflow.exceptions import MlflowException

    try:
        write()
    except MlflowException:
        write()


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise the first access to an embedded SQLite store, which creates and migrates its schema:
    two processes creating one at once corrupt it. A tracking server creates its own; and no lock,
    file or otherwise, guards registry decisions: processes on other machines share none, so
    registration converges instead (`registry.alias`)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(db.with_name(db.name + ".lock")):
        yield


def ui_address(host: str, port: int, experiment: str) -> str:
    """The MLflow UI's address of an experiment, opening on its training runs. MLflow 3's UI has a
    global GenAI / model-training switch that defaults to GenAI, whose overview of an experiment
    shows traces, not runs; the experiment's `mlflow.experimentKind` tag does not move it, the
    `workflowType` parameter does (and the browser remembers it)."""
    return f"http://{host}:{port}/#/experiments/{experiment}?workflowType=machine_learning"


def first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


def experiment_id(client: "MlflowClient", name: str) -> str:
    """The experiment's id, created if needed and marked as model training (MLflow's clients then
    treat its runs as training runs, not GenAI traces)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, tags={EXPERIMENT_KIND: MODEL_TRAINING})
        except MlflowException as err:  # another machine created it since we looked
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
    if EXPERIMENT_KIND not in experiment.tags:  # created before the tag existed
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
    return experiment.experiment_id
