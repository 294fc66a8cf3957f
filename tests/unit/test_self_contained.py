"""The suite owns its inputs: no test module reads a path outside the repository or needs a
project environment variable, so a bare `git clone` passes `make test`."""

import ast
import os
import re
import tempfile
from pathlib import Path

import pytest

from tests.helpers import REPO

PROJECT_VARIABLE = re.compile(r"CHARLM_[A-Z0-9_]+")


def _height(node: ast.expr, names: dict[str, int]) -> int | None:
    """How many directory levels above a module's own file `node` points, when it is a path built
    from `__file__` (Path(__file__).resolve().parents[1] is 2); None for anything else."""
    if isinstance(node, ast.Name):
        return 0 if node.id == "__file__" else names.get(node.id)
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id == "Path" and len(node.args) == 1:
            return _height(node.args[0], names)
        if isinstance(func, ast.Attribute) and func.attr in ("resolve", "absolute"):
            return _height(func.value, names)
        return None
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        base = _height(node.value, names)
        return None if base is None else base + 1
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
        base = _height(node.value.value, names) if node.value.attr == "parents" else None
        index = node.slice.value if isinstance(node.slice, ast.Constant) else None
        return None if base is None or not isinstance(index, int) else base + index + 1
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        base = _height(node.left, names)
        if base is None or not isinstance(node.right, ast.Constant) or not isinstance(node.right.value, str):
            return base
        return base + node.right.value.split("/").count(os.pardir)
    return None


def outside_references(source: str, path: Path) -> list[str]:
    """Each place in a test module (at `path` in the repository) that points outside the
    repository or reads a project environment variable, as 'line N: why'."""
    depth = len(path.relative_to(REPO).parts)  # levels from the file up to the repository root
    tree = ast.parse(source)
    names: dict[str, int] = {}
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            height = _height(node.value, names)
            if height is not None:
                names[node.targets[0].id] = height
    for node in ast.walk(tree):
        if isinstance(node, ast.expr) and not isinstance(node, ast.Name):
            height = _height(node, names)
            if height is not None and height > depth:
                found.append(f"line {node.lineno}: {ast.unparse(node)} climbs above the repository root")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if os.pardir in text.split("/"):
                found.append(f"line {node.lineno}: {text!r} climbs out of its directory")
            elif text.startswith("/") and len(text) > 1 and Path(text).exists() and not _inside(Path(text)):
                found.append(f"line {node.lineno}: {text!r} is a path outside the repository")
            elif PROJECT_VARIABLE.fullmatch(text):
                found.append(f"line {node.lineno}: {text!r} is a project environment variable")
    return sorted(set(found))


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(REPO)


def test_no_test_module_reads_outside_the_repository() -> None:
    modules = sorted((REPO / "tests").rglob("*.py"))
    assert REPO / "tests" / "conftest.py" in modules
    problems = {
        str(module.relative_to(REPO)): found
        for module in modules
        if (found := outside_references(module.read_text(encoding="utf-8"), module))
    }
    assert problems == {}


@pytest.mark.parametrize(
    "line",
    [
        'CORPUS = REPO.parent / "corpora" / "t.txt"',
        'CORPUS = Path(__file__).resolve().parents[2] / "t.txt"',
        "CORPUS = Path(__file__).parent.parent.parent",
        'CORPUS = REPO / ".." / "t.txt"',
        'CORPUS = open("../corpora/t.txt")',
        f"CORPUS = {tempfile.gettempdir()!r}",
        'CORPUS = os.environ.get("CHARLM_CORPUS")',
    ],
)
def test_the_guard_sees_each_way_out(line: str) -> None:
    source = f"REPO = Path(__file__).resolve().parents[1]\n{line}\n"
    assert outside_references(source, REPO / "tests" / "conftest.py")


def test_the_guard_lets_paths_inside_the_repository_pass() -> None:
    source = (
        "REPO = Path(__file__).resolve().parents[1]\n"
        'PARAMS = REPO / "params.yaml"\n'
        "HERE = Path(__file__).parent\n"
        'GITIGNORE = "/mlflow.db\\n"\n'
        'PATH = os.environ["PATH"]\n'
    )
    assert outside_references(source, REPO / "tests" / "conftest.py") == []
