"""report: the evaluation report is nested in code and flat on disk, one metric per key, and refuses
a file that is not one."""

import json
import math
from pathlib import Path

import pytest

from charlm.errors import DataError
from charlm.evaluation.report import EvalReport, SplitReport

FLAT_KEYS = [
    "model",
    "model_dir",
    *(
        f"{split}_{m}"
        for split in ("val", "test")
        for m in ("loss_nats", "bpc", "perplexity", "accuracy", "chars", "sha256")
    ),
    *(
        f"writing_{m}"
        for m in (
            "texts",
            "failed",
            "worst_window_bits",
            "val_worst_window_bits",
            "limit_bits",
            "mean_bits",
            "val_mean_bits",
            "first_failure",
        )
    ),
    "dynamic_chars",
    "dynamic_static_bpc",
    "dynamic_bpc",
    "num_params",
    "mlflow_run_id",
    "mlflow_run",
]


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


def test_the_file_is_flat_and_reads_back(tmp_path: Path) -> None:
    split = {"loss_nats": math.log(2), "accuracy": 0.5, "chars": 9}
    report = EvalReport.parse(
        {
            "model": "lstm",
            "model_dir": "models/lstm",
            "val": split | {"sha256": "b" * 64},
            "test": split | {"sha256": "c" * 64},
            "writing": WRITING,
            "dynamic": {"chars": 100, "static_bpc": 2.5, "bpc": 2.25},
            "num_params": 10,
            "mlflow_run_id": "r",
            "mlflow_run": "training",
        }
    )
    report.write(tmp_path / "eval.json")
    flat = json.loads((tmp_path / "eval.json").read_text())
    assert list(flat) == FLAT_KEYS
    assert (
        flat["val_bpc"] == 1.0
        and flat["val_perplexity"] == 2.0
        and flat["test_sha256"] == "c" * 64
        and flat["writing_failed"] == 1
    )
    assert EvalReport.read(tmp_path / "eval.json") == report

    del flat["test_accuracy"]
    (tmp_path / "eval.json").write_text(json.dumps(flat))
    with pytest.raises(
        DataError, match=r"eval\.json: not a valid EvalReport: test\.accuracy: must be a number"
    ):
        EvalReport.read(tmp_path / "eval.json")
