"""report: the evaluation report shows every figure (bpc and perplexity beside the nats they come
from), names its MLflow metrics by their place in it, and refuses a file that is not one."""

import json
import math
from pathlib import Path

import pytest

from charlm.errors import DataError
from charlm.evaluation.report import EvalReport, SplitReport
from charlm.params.base import flatten

WRITING = {
    "texts": 24,
    "failed": 1,
    "worst_window_bits": 19.5,
    "val_worst_window_bits": 6.7,
    "limit_bits": 7.7,
    "mean_bits": 3.4,
    "val_mean_bits": 2.9,
    "first_failure": "after 'JULIET:' (greedy): '&&&&'",
}


def test_split_report_of_a_result() -> None:
    report = SplitReport(loss_nats=math.log(2), accuracy=0.5, chars=3, sha256="s" * 64)
    assert (report.bpc, report.perplexity, report.accuracy, report.chars, report.sha256) == (
        1.0,
        2.0,
        0.5,
        3,
        "s" * 64,
    )


def test_the_file_shows_every_figure_and_reads_back(tmp_path: Path) -> None:
    split = {"loss_nats": math.log(2), "accuracy": 0.5, "chars": 9}
    reading = {"loss_nats": 1.5, "accuracy": 0.4, "chars": 100}
    report = EvalReport.parse(
        {
            "name": "lstm",
            "model_dir": "models/lstm",
            "val": split | {"sha256": "b" * 64},
            "test": split | {"sha256": "c" * 64},
            "writing": WRITING,
            "dynamic_static": reading,
            "dynamic": reading | {"loss_nats": 1.25},
            "num_params": 10,
            "mlflow_run_id": "r",
            "mlflow_run": "training",
        }
    )
    report.write(tmp_path / "eval.json")
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["val"]["bpc"] == 1.0 and written["val"]["perplexity"] == 2.0  # for people and dvc
    assert written["test"]["sha256"] == "c" * 64 and written["writing"]["failed"] == 1
    assert EvalReport.read(tmp_path / "eval.json") == report
    metrics = flatten(report, sep="_")  # its MLflow metrics
    assert metrics["val_bpc"] == 1.0 and metrics["dynamic_bpc"] == report.dynamic.bpc
    assert metrics["dynamic_static_bpc"] == report.dynamic_static.bpc and metrics["writing_failed"] == 1

    del written["test"]["accuracy"]
    (tmp_path / "eval.json").write_text(json.dumps(written))
    with pytest.raises(DataError, match=r"eval\.json: not a valid EvalReport: test\.accuracy: missing"):
        EvalReport.read(tmp_path / "eval.json")
