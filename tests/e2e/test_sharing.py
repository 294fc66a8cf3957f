"""Experiments shared across a team: one teammate runs two queued experiments and pushes them through
a shared git remote and DVC remote; another, in a clone of their own, pulls them, applies the better
one by validation bpc, gets its model without training, generates from it, and finds its runs on the
team's tracking server."""

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
    store,
)

pytestmark = pytest.mark.slow


def test_a_teammate_pulls_the_better_experiment_and_reproduces_nothing(
    lstm_workspace: Callable[..., Path], sqlite_server: str, tmp_path: Path
) -> None:
    origin, dvc_remote = tmp_path / "origin.git", tmp_path / "dvc-remote"
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path)
    team = {"MLFLOW_TRACKING_URI": sqlite_server}
    # Teammate A: the tiny lstm pipeline, its data stages run and committed, with a git remote
    # and a DVC remote.
    alice = lstm_workspace("alice")
    run(["git", "remote", "add", "origin", str(origin)], alice)
    run(["dvc", "remote", "add", "-d", "team", str(dvc_remote)], alice)
    git_commit(alice, "pipeline")
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], alice)
    for hidden in (16, 32):
        settings = ["-S", f"++models.lstm.hidden_size={hidden}"]
        assert "Queued experiment" in run(["dvc", "exp", "run", "--queue", *settings], alice).stdout
    run_queue(alice, 2, jobs=2, env=team)
    pushed = run(["dvc", "exp", "push", "origin", "--rev", "HEAD"], alice).stdout
    assert all(name in pushed for name in experiments(alice)), pushed

    # Teammate B: another clone, another directory; nothing trained, nothing logged.
    bob = tmp_path / "bob"
    run(["git", "clone", "-q", "-b", "main", str(origin), str(bob)], tmp_path)
    run(["dvc", "exp", "pull", "origin", "--rev", "HEAD"], bob)
    table = experiments(bob)
    assert sorted(row["models.lstm.hidden_size"] for row in table.values()) == ["16", "32"]
    name, best = min(table.items(), key=lambda item: float(item[1]["val_bpc"]))
    run(["dvc", "exp", "apply", name], bob)
    run(["dvc", "pull"], bob)
    assert "up to date" in run(["dvc", "status"], bob).stdout
    reproduced = run(["dvc", "repro"], bob, env=team).stdout
    assert "Running stage" not in reproduced, reproduced
    assert not (bob / "mlflow.db").exists(), "nothing may be retrained, logged or registered"
    assert read_info(bob / "models/lstm").model.hidden_size == int(best["models.lstm.hidden_size"])
    assert EvalReport.read(bob / "metrics/eval/lstm.json").val.bpc == pytest.approx(float(best["val_bpc"]))
    for path in ("data/vocab.json", "data/encoded/train.npy"):
        assert sha256_file(bob / path) == sha256_file(alice / path), path
    charlm_generate("models/lstm", bob, 20)

    # A's runs are on the team's server, joined to the experiment by its DVC name.
    client = store(sqlite_server)
    experiment = client.get_experiment_by_name("charlm")
    (training,) = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`dvc.exp_name` = '{name}' and attributes.run_name = 'lstm'",
    )
    assert training.info.run_id == best["mlflow_run_id"]
    assert training.data.params["model.hidden_size"] == best["models.lstm.hidden_size"]
    # Evaluation logs its figure at step 0 of the training run, beside training's own curve.
    logged = [m.value for m in client.get_metric_history(training.info.run_id, "val_bpc") if m.step == 0]
    assert float(best["val_bpc"]) == pytest.approx(logged[-1])
