"""Experiments swept and shared across a team: one teammate queues two experiments on a brand-new
MLflow database and runs them two at a time, then pushes them through a shared git remote and DVC
remote; another, in a clone of their own, pulls them, applies the better one by validation bpc, gets
its model without training and generates from it.

Every experiment must land in the workspace's database (none lost to a schema-creation race, or to
two runs logging the same datasets at once), tagged with its DVC experiment name so `dvc exp show`
and MLflow can be joined. (Registering from several machines at the same moment is
tests/e2e/test_registry_race.py's, on `make server`.)
"""

from collections.abc import Callable
from pathlib import Path

import pytest

from charlm.evaluation.report import EvalReport
from charlm.files import sha256_file
from charlm.model.directory import read_info
from tests.helpers import (
    charlm_generate,
    experiments,
    git_commit,
    run,
    run_queue,
    workspace_store,
)

pytestmark = pytest.mark.slow


def test_queued_experiments_join_mlflow_and_a_teammate_pulls_the_better_one_reproducing_nothing(
    lstm_workspace: Callable[..., Path], tmp_path: Path
) -> None:
    origin, dvc_remote = tmp_path / "origin.git", tmp_path / "dvc-remote"
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path)
    # Teammate A: the tiny lstm pipeline, its data stages run and committed (every experiment
    # restores them from the cache), with a git remote and a DVC remote, and no MLflow database yet.
    alice = lstm_workspace("alice")
    run(["git", "remote", "add", "origin", str(origin)], alice)
    run(["dvc", "remote", "add", "-d", "team", str(dvc_remote)], alice)
    git_commit(alice, "pipeline")
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], alice)
    assert not (alice / "mlflow.db").exists()
    cases = [("rnn", "16"), ("lstm", "32")]
    for cell, hidden in cases:
        settings = ["-S", f"models.lstm.cell={cell}", "-S", f"++models.lstm.hidden_size={hidden}"]
        assert "Queued experiment" in run(["dvc", "exp", "run", "--queue", *settings], alice).stdout
    run_queue(alice, len(cases), jobs=2)

    table = experiments(alice)
    swept = sorted((row["models.lstm.cell"], row["models.lstm.hidden_size"]) for row in table.values())
    assert swept == sorted(cases)
    client = workspace_store(alice)
    experiment = client.get_experiment_by_name("charlm")
    runs = client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'lstm'")
    by_exp = {r.data.tags["dvc.exp_name"]: r for r in runs}
    assert len(runs) == len(cases) and by_exp.keys() == table.keys()
    for name, row in table.items():
        mlrun = by_exp[name]
        assert mlrun.info.status == "FINISHED"
        assert mlrun.info.run_id == row["mlflow_run_id"]
        assert mlrun.data.params["arch.cell"] == row["models.lstm.cell"]
        assert mlrun.data.params["arch.hidden_size"] == row["models.lstm.hidden_size"]
        assert mlrun.data.metrics["test_bpc"] == pytest.approx(float(row["test.bpc"]))
        # Evaluation logs its figure at step 0 of the training run, beside training's own curve.
        logged = [m.value for m in client.get_metric_history(mlrun.info.run_id, "val_bpc") if m.step == 0]
        assert float(row["val.bpc"]) == pytest.approx(logged[-1])
    pushed = run(["dvc", "exp", "push", "origin", "--rev", "HEAD"], alice).stdout
    assert all(name in pushed for name in table), pushed

    # Teammate B: another clone, another directory; nothing trained, nothing logged.
    bob = tmp_path / "bob"
    run(["git", "clone", "-q", "-b", "main", str(origin), str(bob)], tmp_path)
    run(["dvc", "exp", "pull", "origin", "--rev", "HEAD"], bob)
    pulled = experiments(bob)
    assert pulled.keys() == table.keys()
    name, best = min(pulled.items(), key=lambda item: float(item[1]["val.bpc"]))
    run(["dvc", "exp", "apply", name], bob)
    run(["dvc", "pull"], bob)
    assert "up to date" in run(["dvc", "status"], bob).stdout
    reproduced = run(["dvc", "repro"], bob).stdout
    assert "Running stage" not in reproduced, reproduced
    assert not (bob / "mlflow.db").exists(), "nothing may be retrained, logged or registered"
    info = read_info(bob / "models/lstm").arch
    assert (info.cell, str(info.hidden_size)) == (best["models.lstm.cell"], best["models.lstm.hidden_size"])
    assert EvalReport.read(bob / "metrics/eval/lstm.json").val.bpc == pytest.approx(float(best["val.bpc"]))
    for path in ("data/vocab.json", "data/encoded/train.npy"):
        assert sha256_file(bob / path) == sha256_file(alice / path), path
    charlm_generate("models/lstm", bob, 20)
