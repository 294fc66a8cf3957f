"""Sweeps: a queued grid of DVC experiments run two at a time on a brand-new MLflow database.

Every experiment must land in the workspace's database (none lost to a schema-creation race),
tagged with its DVC experiment name so `dvc exp show` and MLflow can be joined.
"""

import csv
import io
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import git_commit, run, tiny_overrides, workspace_store

pytestmark = pytest.mark.slow

SWEEP_TIMEOUT_S = 400


def test_queued_grid_runs_two_at_a_time_and_joins_mlflow(
    workspace: Callable[..., Path], tiny_corpus: Path
) -> None:
    overrides = tiny_overrides(tiny_corpus)
    overrides["models"] = {"m": {"cell": "lstm"}}
    ws = workspace(overrides)
    run(["dvc", "repro", "vocab"], ws)  # shared by every experiment: restored from the cache
    git_commit(ws, "sweep base")
    assert not (ws / "mlflow.db").exists()

    grid = ["-S", "models.m.cell=rnn,lstm", "-S", "model.hidden_size=16,32"]
    # Up to `register` (train, evaluate, register); samples and the comparison chart are not needed.
    queued = run(["dvc", "exp", "run", "--queue", "register", *grid], ws).stdout
    assert queued.count("Queued experiment") == 4
    try:
        # `--run-all` starts the queue's workers and follows each task until the queue is done.
        run(["dvc", "exp", "run", "--run-all", "-j", "2"], ws, timeout=SWEEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the queued grid did not finish within {SWEEP_TIMEOUT_S} s")
    finally:
        run(["dvc", "queue", "stop", "--kill"], ws, check=False)
    status = run(["dvc", "queue", "status"], ws).stdout
    assert status.count("Success") == 4, status + run(["dvc", "queue", "logs", "-h"], ws).stdout

    table = list(csv.DictReader(io.StringIO(run(["dvc", "exp", "show", "--csv"], ws).stdout)))
    experiments = {row["Experiment"]: row for row in table if row["Experiment"]}
    assert len(experiments) == 4
    assert {(r["models.m.cell"], r["model.hidden_size"]) for r in experiments.values()} == {
        ("rnn", "16"),
        ("rnn", "32"),
        ("lstm", "16"),
        ("lstm", "32"),
    }

    client = workspace_store(ws)
    experiment = client.get_experiment_by_name("charlm")
    runs = client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'm'")
    by_exp = {r.data.tags["dvc.exp_name"]: r for r in runs}
    assert len(runs) == 4 and by_exp.keys() == experiments.keys()
    for name, row in experiments.items():
        mlrun = by_exp[name]
        assert mlrun.info.status == "FINISHED"
        assert mlrun.info.run_id == row["mlflow_run_id"]
        assert mlrun.data.params["model.cell"] == row["models.m.cell"]
        assert mlrun.data.params["model.hidden_size"] == row["model.hidden_size"]
        assert mlrun.data.metrics["test_bpc"] == pytest.approx(float(row["test_bpc"]))

    # Registrations ran concurrently; the champion is still the best of the four.
    champion = client.get_model_version_by_alias("charlm", "champion")
    best = min(experiments.values(), key=lambda row: float(row["val_bpc"]))
    assert champion.tags["charlm.val_bpc"] == f"{float(best['val_bpc']):.6f}"
