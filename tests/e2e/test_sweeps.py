"""Sweeps: queued DVC experiments run two at a time on a brand-new MLflow database.

Every experiment must land in the workspace's database (none lost to a schema-creation race),
tagged with its DVC experiment name so `dvc exp show` and MLflow can be joined. (Registering at
the same moment is tests/e2e/test_registry_race.py's.)
"""

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import experiments, git_commit, run, run_queue, workspace_store

pytestmark = pytest.mark.slow


def test_queued_experiments_run_two_at_a_time_and_join_mlflow(lstm_workspace: Callable[..., Path]) -> None:
    ws = lstm_workspace()  # its data stages have run: every experiment restores them from the cache
    git_commit(ws, "sweep base")
    assert not (ws / "mlflow.db").exists()

    # Up to `evaluate`, whose report holds the MLflow run id that `dvc exp show` joins on.
    cases = [("rnn", "16"), ("lstm", "32")]
    for cell, hidden in cases:
        settings = ["-S", f"models.lstm.cell={cell}", "-S", f"++models.lstm.hidden_size={hidden}"]
        queued = run(["dvc", "exp", "run", "--queue", "evaluate@lstm", *settings], ws).stdout
        assert "Queued experiment" in queued
    run_queue(ws, len(cases), jobs=2)

    table = experiments(ws)
    swept = sorted((row["models.lstm.cell"], row["models.lstm.hidden_size"]) for row in table.values())
    assert swept == sorted(cases)

    client = workspace_store(ws)
    experiment = client.get_experiment_by_name("charlm")
    runs = client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'lstm'")
    by_exp = {r.data.tags["dvc.exp_name"]: r for r in runs}
    assert len(runs) == len(cases) and by_exp.keys() == table.keys()
    for name, row in table.items():
        mlrun = by_exp[name]
        assert mlrun.info.status == "FINISHED"
        assert mlrun.info.run_id == row["mlflow_run_id"]
        assert mlrun.data.params["model.cell"] == row["models.lstm.cell"]
        assert mlrun.data.params["model.hidden_size"] == row["models.lstm.hidden_size"]
        assert mlrun.data.metrics["test_bpc"] == pytest.approx(float(row["test_bpc"]))
