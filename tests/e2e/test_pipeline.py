"""End to end: the whole real DVC pipeline on a tiny config, with a real MLflow SQLite store.

The promises: `dvc repro` trains, evaluates, compares and registers every model, each better than
the unigram baseline, and the champion loads from the registry; nothing reruns after; new held-out
splits score the same weights anew. Interrupted runs: tests/e2e/test_recovery.py."""

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from charlm.data.report import DataReport
from charlm.data.vocab import Vocabulary
from charlm.evaluation.report import EvalReport
from charlm.generation.samples import Samples
from charlm.registry.decision import Decision
from tests.helpers import Workspace, charlm_generate, run, runs_by_name, workspace_store

pytestmark = pytest.mark.slow


def test_the_data_stages_split_the_corpus_and_encode_it_by_the_training_vocabulary(
    tiny_pipeline: Path, tiny_corpus: Path
) -> None:
    ws = tiny_pipeline
    prepared = {name: (ws / "data/prepared" / f"{name}.txt").read_text() for name in ("train", "val", "test")}
    assert prepared["train"] + prepared["val"] + prepared["test"] == tiny_corpus.read_text()
    vocab = Vocabulary.load(ws / "data/vocab.json")
    assert set(vocab.itos[1:]) == set(prepared["train"]) and vocab.unicode_form == "NFC"
    ids = np.load(ws / "data/encoded/val.npy")
    assert ids.dtype == np.uint8 and ids.tolist() == vocab.encode(prepared["val"]).tolist()
    data = DataReport.read(ws / "metrics/data.json")
    assert data.vocab_size == len(vocab) and data.splits["val"].chars == len(prepared["val"])
    assert json.loads((ws / "metrics/prepare.json").read_text())["val"]["chars"] == len(prepared["val"])


def test_whole_pipeline_ends_with_a_loadable_champion(tiny_pipeline: Path, tmp_path: Path) -> None:
    ws = tiny_pipeline

    runs = runs_by_name(ws)
    data = DataReport.read(ws / "metrics/data.json")
    assert sorted(runs) == ["comparison", "lstm", "rnn"]
    del runs["comparison"]
    for name, mlrun in runs.items():
        assert mlrun.info.status == "FINISHED"
        assert mlrun.data.params["arch.cell"] == name
        assert mlrun.data.params["train.max_steps"] == "30"
        assert mlrun.data.tags["dvc.stage"] == f"train@{name}"
        assert len(mlrun.data.tags["charlm.vocab_sha256"]) == 64
        assert mlrun.data.metrics["steps"] == 30
        report = EvalReport.read(ws / "metrics/eval" / f"{name}.json")
        client = workspace_store(ws)
        for split in ("val", "test"):  # the models learnt more than character frequencies
            assert report.split(split).bpc < data.baselines["unigram"][split], (name, split)
            logged = client.get_metric_history(mlrun.info.run_id, f"{split}_bpc")  # val: training's too
            assert report.split(split).bpc in [m.value for m in logged if m.step == 0]
            assert (
                mlrun.data.tags[f"charlm.{split}_sha256"] == report.split(split).sha256 == data.sha256(split)
            )
        assert mlrun.data.tags["charlm.train_sha256"] == data.sha256("train")
        assert (ws / "models" / name / "model.safetensors").is_file()
        assert report.mlflow_run == "training" and report.mlflow_run_id == mlrun.info.run_id
        # What it writes, judged: every prompt's texts (sampled twice and greedily), on its run too.
        writing, judged = (
            report.writing,
            yaml.safe_load((ws / "params.yaml").read_text())["evaluate"]["writing"],
        )
        assert writing.texts == len(judged["prompts"]) * (judged["samples"] + 1)
        assert 0 <= writing.failed <= writing.texts
        assert writing.limit_bits == pytest.approx(writing.val_worst_window_bits + 12.0, abs=1e-3)
        assert writing.val_mean_bits < writing.val_worst_window_bits
        logged = client.get_run(mlrun.info.run_id).data.metrics
        assert logged["writing_failed"] == writing.failed and logged["writing_texts"] == writing.texts
        texts = client.download_artifacts(mlrun.info.run_id, f"writing/{name}.txt", str(tmp_path))
        assert Path(texts).read_text().count("=== after ") == writing.texts
        samples = Samples.read(ws / "samples" / f"{name}.txt")
        assert [s.prompt for s in samples.samples] == ["ROMEO:", "JULIET:"]
        # The command line samples from a model directory as the generate params say: by default,
        # the first sample exactly.
        first = samples.samples[0]
        cmd = [
            "charlm",
            "generate",
            "--model",
            f"models/{name}",
            "--prompt",
            first.prompt,
            "--seed",
            str(first.seed),
        ]
        assert run(cmd, ws).stdout == first.prompt + first.text + "\n"
    with open(ws / "plots/curves/val.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["model"] for r in rows} == {"rnn", "lstm"} and {r["step"] for r in rows} == {"10", "20", "30"}

    table = (ws / "metrics/comparison.csv").read_text().splitlines()
    assert table[0].startswith("model,val_bpc,test_bpc") and len(table) == 3
    assert (ws / "plots/comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    decision = Decision.read(ws / "metrics/register.json")
    assert decision.promoted and decision.champion_version == decision.version == 1
    client = workspace_store(ws)
    assert int(client.get_model_version_by_alias("charlm", "champion").version) == 1
    charlm_generate("models:/charlm@champion", ws, 30, MLFLOW_TRACKING_URI=f"sqlite:///{ws / 'mlflow.db'}")

    shown = run(["dvc", "metrics", "show", "--json"], ws).stdout
    assert "best_train_val_bpc" in shown and '"bpc"' in shown  # nested: a split's bpc
    plots = run(["dvc", "plots", "show", "--json"], ws).stdout
    assert '"errors"' not in plots
    assert "up to date" in run(["dvc", "status"], ws).stdout
    assert "Running stage" not in run(["dvc", "repro"], ws).stdout


def test_new_held_out_splits_score_the_same_weights_anew_and_promote_only_when_told(
    lstm_workspace: Workspace,
) -> None:
    ws = lstm_workspace()
    run(["dvc", "repro"], ws)
    first = Decision.read(ws / "metrics/register.json")
    weights = (ws / "models/lstm/model.safetensors").read_bytes()

    def with_params(**sections: dict[str, Any]) -> Decision:
        params = yaml.safe_load((ws / "params.yaml").read_text())
        for name, values in sections.items():
            params[name].update(values)
        (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        out = run(["dvc", "repro"], ws)
        assert "Traceback" not in out.stdout + out.stderr
        return Decision.read(ws / "metrics/register.json")

    # Half the validation text moves to the test split; the training split stays as it was.
    kept = with_params(prepare={"val_fraction": 0.05, "test_fraction": 0.15})
    assert (ws / "models/lstm/model.safetensors").read_bytes() == weights
    assert kept.new_version and kept.champion_version == first.version and not kept.promoted
    assert "validated on other data" in kept.verdict
    client = workspace_store(ws)
    version = client.get_model_version("charlm", str(kept.version))
    report, data = EvalReport.read(ws / "metrics/eval/lstm.json"), DataReport.read(ws / "metrics/data.json")
    assert version.tags["charlm.val_sha256"] == report.val.sha256 == data.sha256("val")
    assert version.tags["charlm.val_bpc"] == f"{report.val.bpc:.6f}"  # its own figures...
    assert (
        f"| this model | {report.val.bpc:.4f} | {report.test.bpc:.4f} |" in version.description
    )  # ...on its card
    first_version = client.get_model_version("charlm", str(first.version))
    assert first_version.tags["charlm.val_sha256"] != report.val.sha256  # the first keeps its own

    promoted = with_params(registry={"on_new_val_data": "promote"})
    assert (
        promoted.version == kept.version and promoted.promoted and promoted.champion_version == kept.version
    )
    assert int(client.get_model_version_by_alias("charlm", "champion").version) == kept.version
