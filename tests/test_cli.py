"""The charlm command line: subcommands run as a user would run them."""

from pathlib import Path

import pytest

from tests.conftest import REPO, run


def test_params_subcommand_shows_resolved_models() -> None:
    out = run(["charlm", "params", "--file", str(REPO / "params.yaml")], REPO).stdout
    assert "valid" in out and "  rnn: cell=rnn " in out and "  lstm: cell=lstm " in out and "seq_len=" in out


def test_params_subcommand_reports_errors(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text((REPO / "params.yaml").read_text().replace("min_count:", "min_cuont:"))
    proc = run(["charlm", "params", "--file", str(bad)], tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: vocab.min_cuont: unknown key")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow  # creating and migrating a new store takes seconds
def test_tracking_subcommand_creates_the_store(tmp_path: Path) -> None:
    out = run(["charlm", "tracking"], tmp_path, env={"MLFLOW_TRACKING_URI": ""}).stdout
    assert f"sqlite:///{tmp_path.resolve()}/mlflow.db" in out
    assert (tmp_path / "mlflow.db").stat().st_size > 0
