"""Versioned data shared through a DVC remote: push from one clone, pull into another, reproduce nothing."""

import json
from pathlib import Path

import pytest

from charlm.files import sha256_file
from tests.helpers import charlm_generate, git_commit, run

pytestmark = pytest.mark.slow


def test_teammate_pulls_and_reproduces_nothing(tiny_pipeline: Path, tmp_path: Path) -> None:
    ws = tiny_pipeline
    remote = tmp_path / "team-remote"
    run(["dvc", "remote", "add", "-d", "team", str(remote)], ws)
    git_commit(ws, "tiny pipeline")
    pushed = run(["dvc", "push"], ws).stdout
    assert "pushed" in pushed

    clone = tmp_path / "teammate" / "charlm"
    run(["git", "clone", "-q", str(ws), str(clone)], tmp_path)
    assert not (clone / "models/lstm").exists() and not (clone / "data/encoded").exists()
    run(["dvc", "pull"], clone)
    assert "up to date" in run(["dvc", "status"], clone).stdout
    reproduced = run(["dvc", "repro"], clone).stdout
    assert "Running stage" not in reproduced, reproduced
    assert not (clone / "mlflow.db").exists(), "nothing should have been retrained or registered"

    for path in ("models/lstm/model.safetensors", "checkpoints/rnn/state.safetensors", "data/vocab.json"):
        assert sha256_file(clone / path) == sha256_file(ws / path), path
    assert json.loads(run(["dvc", "metrics", "diff", "--json"], clone).stdout or "{}") == {}
    charlm_generate("models/lstm", clone, 20)
