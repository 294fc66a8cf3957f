"""End to end: the real DVC pipeline's data stages (fetch, prepare, vocab) on bad input, in a fresh
repository, and their memory as the corpus grows (what they make of good input:
tests/e2e/test_pipeline.py)."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import corpora
from tests.helpers import peak_rss, run, tiny_overrides

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
            {"limits": {"max_batch_rowz": 8}},
            "limits.max_batch_rowz: unknown key (did you mean 'max_batch_rows'?)",
        ),
        ({"limitz": {}}, "limitz: unknown key (did you mean 'limits'?)"),
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


def test_a_prompt_the_corpus_cannot_spell_fails_at_the_vocab_stage_before_training(
    workspace: Workspace, tmp_path: Path
) -> None:
    corpus = tmp_path / "poems.txt"
    corpus.write_text(corpora.many_symbols(60_000, 3_000), encoding="utf-8")
    ws = workspace(tiny_overrides(corpus))  # the default prompts: ROMEO: and JULIET:, unknown: error
    proc = run(["dvc", "repro"], ws, check=False)
    assert proc.returncode != 0
    assert "generate.prompts: 'ROMEO:' cannot start a generation from this corpus" in proc.stderr
    assert "['R', 'O', 'M', 'E', ':']" in proc.stderr
    assert "train@" not in proc.stdout and not (ws / "models").exists()


def test_the_vocab_stage_s_memory_does_not_grow_with_the_square_of_the_vocabulary(
    workspace: Workspace, tmp_path: Path
) -> None:
    """3M characters over 12,000 symbols needed 6.9 GB when pairs were counted in V x V tables."""
    corpus = tmp_path / "symbols.txt"
    corpus.write_text(corpora.many_symbols(3_000_000, 12_000), encoding="utf-8")
    overrides = tiny_overrides(corpus)
    overrides["generate"] |= {"prompts": ["\u4e00\u4e01"]}  # two of the most frequent symbols
    ws = workspace(overrides)
    run(["dvc", "repro", "prepare"], ws)
    peak = peak_rss(["dvc", "repro", "-s", "vocab"], ws)
    report = json.loads((ws / "metrics/data.json").read_text())
    assert report["vocab_size"] > 9_000
    assert peak < 1 << 30, f"{peak / 2**20:.0f} MiB"  # V x V int64 tables: 690 MiB per split
    assert report["baselines"]["bigram"]["val"] < report["baselines"]["unigram"]["val"]


def test_the_data_stages_memory_does_not_grow_with_the_corpus(workspace: Workspace, tmp_path: Path) -> None:
    sizes, peaks = (16, 128), {}  # MB: several chunks each, so both read as any larger corpus would
    for size in sizes:
        corpus = tmp_path / f"corpus{size}.txt"
        corpora.write_lines(corpus, size * 10**6)
        ws = workspace(tiny_overrides(corpus), name=f"ws{size}")
        run(["dvc", "repro", "fetch"], ws)
        peaks[size] = {stage: peak_rss(["dvc", "repro", "-s", stage], ws) for stage in ("prepare", "vocab")}
    grown = (sizes[1] - sizes[0]) * 10**6
    for stage in ("prepare", "vocab"):
        # A pass that held a split, or mapped it whole, would grow by most of the corpus's growth;
        # a streaming one grows by what its allocator keeps of more chunks (under a tenth).
        growth = peaks[sizes[1]][stage] - peaks[sizes[0]][stage]
        assert growth < grown / 3, (
            f"{stage}: {growth / 2**20:.0f} MiB more for {grown / 2**20:.0f} MiB more corpus"
        )
