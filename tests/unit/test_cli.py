"""The charlm command line: subcommands run as a user would run them."""

import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO, config, run


def test_params_subcommand_shows_resolved_models() -> None:
    out = run(["charlm", "params", "--file", str(REPO / "params.yaml")], REPO).stdout
    assert "valid" in out and "  rnn: cell=rnn " in out and "  lstm: cell=lstm " in out and "seq_len=" in out


def test_version_is_the_installed_distribution_and_declares_what_it_needs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from importlib.metadata import metadata, requires

    from charlm.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"charlm {metadata('charlm')['Version']}\n"
    declared = requires("charlm") or []
    assert any(r.startswith("uvicorn") for r in declared)  # charlm_scoring_loop's hooks
    assert any(r.startswith("httptools") for r in declared)  # the HTTP parser uvicorn takes
    assert any(r.startswith("nvidia-ml-py") and 'extra == "gpu"' in r for r in declared)  # GPU metrics
    assert metadata("charlm")["License-Expression"] == "MIT"


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


def test_generate_checks_the_request_before_printing(tmp_path: Path) -> None:
    import torch

    from charlm.data.vocab import Vocabulary
    from charlm.model.directory import save_model_dir
    from charlm.model.network import CharLM
    from charlm.params.training import ArchConfig

    vocab = Vocabulary.build("hi there\n")
    torch.manual_seed(0)
    model = CharLM(config(ArchConfig, cell="gru", embedding_size=8, hidden_size=8, num_layers=1), len(vocab))
    save_model_dir(tmp_path / "m", model, vocab, "m")
    base = ["charlm", "generate", "--model", str(tmp_path / "m"), "--length", "12", "--seed", "1"]
    outside = run([*base, "--prompt", "hi"], tmp_path, check=False)
    assert outside.returncode == 2 and "no params.yaml here; run in the project" in outside.stderr
    shutil.copy(REPO / "params.yaml", tmp_path)  # in a project, it samples as its generate params say

    bad = run([*base, "--prompt", "\U0001f600hi"], tmp_path, check=False)
    assert bad.returncode == 2 and bad.stdout == ""
    assert "not in the model's vocabulary: ['\U0001f600']" in bad.stderr
    out = run([*base, "--prompt", "hi"], tmp_path).stdout
    assert out.startswith("hi") and len(out) == len("hi") + 12 + 1


def test_generate_options_are_the_sampling_options() -> None:
    """`charlm generate` offers exactly the fields of SamplingOptions, described as they are."""
    from charlm.cli import build_parser
    from charlm.params.generation import SamplingOptions

    generate = build_parser()._subparsers._group_actions[0].choices["generate"]  # type: ignore[union-attr]
    options = {a.dest: a for a in generate._actions if a.dest not in ("help", "uri", "server", "prompt")}
    assert options.keys() == SamplingOptions.model_fields.keys()
    for name, info in SamplingOptions.model_fields.items():
        assert options[name].default is None and str(info.description) in options[name].help
    assert options["unknown"].choices == ("error", "unk")
