"""Sweeps: queued DVC experiments run two at a time on a brand-new MLflow database.

Every experiment must land in the workspace's database (none lost to a schema-creation race),
tagged with its DVC experiment name so `dvc exp show` and MLflow can be joined, and the champion
registered concurrently is the best of them by validation bpc.
"""

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import experiments, git_commit, run, run_queue, tiny_overrides, workspace_store

pytestmark = pytest.mark.slow


def test_queued_experiments_run_two_at_a_time_and_join_mlflow(
    workspace: Callable[..., Path], tiny_corpus: Path
) -> None:
    overrides = tiny_overrides(tiny_corpus)
    overrides["models"] = {"m": {"cell": "lstm"}}
    ws = workspace(overrides)
    run(["dvc", "repro", "vocab"], ws)  # shared by every experiment: restored from the cache
    git_commit(ws, "sweep base")
    assert not (ws / "mlflow.db").exists()

    # Up to `register` (train, evaluate, generate, register); the comparison chart is not needed.
    cases = [("rnn", "16"), ("lstm", "32")]
    for cell, hidden in cases:
        settings = ["-S", f"models.m.cell={cell}", "-S", f"++models.m.hidden_size={hidden}"]
        assert "Queued experiment" in run(["dvc", "exp", "run", "--queue", "register", *settings], ws).stdout
    run_queue(ws, len(cases), jobs=2)

    table = experiments(ws)
    assert sorted((r["models.m.cell"], r["models.m.hidden_size"]) for r in table.values()) == sorted(cases)

    client = workspace_store(ws)
    experiment = client.get_experiment_by_name("charlm")
    runs = client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'm'")
    by_exp = {r.data.tags["dvc.exp_name"]: r for r in runs}
    assert len(runs) == len(cases) and by_exp.keys() == table.keys()
    for name, row in table.items():
        mlrun = by_exp[name]
        assert mlrun.info.status == "FINISHED"
        assert mlrun.info.run_id == row["mlflow_run_id"]
        assert mlrun.data.params["model.cell"] == row["models.m.cell"]
        assert mlrun.data.params["model.hidden_size"] == row["models.m.hidden_size"]
        assert mlrun.data.metrics["test_bpc"] == pytest.approx(float(row["test_bpc"]))

    # Registrations ran concurrently; the champion is still the best by validation bpc.
    champion = client.get_model_version_by_alias("charlm", "champion")
    best = min(table.values(), key=lambda row: float(row["val_bpc"]))
    assert champion.tags["charlm.val_bpc"] == f"{float(best['val_bpc']):.6f}"
