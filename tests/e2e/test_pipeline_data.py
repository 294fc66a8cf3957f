"""End to end: the real DVC pipeline's data stages (fetch, prepare, vocab) on bad input, in a fresh
repository (what they make of good input: tests/e2e/test_pipeline.py)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run, tiny_overrides

pytestmark = pytest.mark.slow

Workspace = Callable[[dict[str, Any]], Path]


def test_bad_corpus_fails_cleanly_without_partial_outputs(workspace: Workspace, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    good = b"To be or not to be\n" * 1_100_000  # 20.9 MB: the bad byte is past the first chunk read
    bad.write_bytes(good + b"\xc3\x28" + b"\n")
    ws = workspace(tiny_overrides(bad))
    proc = run(["dvc", "repro", "vocab"], ws, check=False)
    assert proc.returncode != 0
    assert f"bad.txt: not valid UTF-8 at byte offset {len(good)} (invalid" in proc.stderr
    assert sorted(p.name for p in (ws / "data").iterdir()) == ["params.json", "raw"]  # nothing partial
    assert not (ws / "metrics/prepare.json").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"vocab": {"min_cuont": 2}}, "vocab.min_cuont: unknown key (did you mean 'min_count'?)"),
        # A section only the last stage reads, and one no stage reads, fail as early.
        (
            {"serve": {"max_batch_rowz": 8}},
            "serve.max_batch_rowz: unknown key (did you mean 'max_batch_rows'?)",
        ),
        ({"servve": {}}, "servve: unknown key (did you mean 'serve'?)"),
    ],
)
def test_bad_params_fail_before_any_work(
    workspace: Workspace, tiny_corpus: Path, overrides: dict[str, Any], message: str
) -> None:
    ws = workspace({**tiny_overrides(tiny_corpus), **overrides})
    proc = run(["dvc", "repro"], ws, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    assert not (ws / "data/raw").exists()
