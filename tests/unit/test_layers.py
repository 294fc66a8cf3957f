"""The package's layers: `lint-imports` keeps the contracts in pyproject.toml, which name every
subpackage and module of charlm, and fails on a back-edge or an import cycle."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the package under `src`, with the project's contracts."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(REPO / "pyproject.toml")],
        cwd=REPO,
        env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
    )


def test_the_package_keeps_its_contracts() -> None:
    proc = lint_imports(REPO / "src")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("data/vocab.py", "import charlm.model.network", "Each package imports only the layers below it"),
        ("training/outputs.py", "import charlm.training.state", "No import cycle"),
        ("model/network.py", "import mlflow", "without MLflow"),
        ("new_step.py", "", "Each package imports only the layers below it"),  # in no layer
    ],
)
def test_a_back_edge_a_cycle_or_an_unplaced_module_breaks_them(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "charlm", src / "charlm", ignore=shutil.ignore_patterns("__pycache__"))
    path = src / "charlm" / module
    path.write_text((path.read_text() if path.exists() else "") + f"\n{line}\n")
    proc = lint_imports(src)
    assert proc.returncode != 0 and broken in proc.stdout, proc.stdout
