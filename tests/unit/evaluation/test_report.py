"""report: the evaluation report is nested in code and flat on disk, one metric per key, and refuses
a file that is not one."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from charlm.errors import DataError
from charlm.evaluation.metrics import EvalResult
from charlm.evaluation.report import EvalReport, SplitReport

FLAT_KEYS = [
    "train_sha256",
    *(
        key
        for split in ("val", "test")
        for key in (
            *(
                f"{split}_{m}"
                for m in ("loss_nats", "bpc", "perplexity", "accuracy", "oov_rate", "chars", "sha256")
            ),
            f"unigram_{split}_bpc",
            f"bigram_{split}_bpc",
        )
    ),
    "num_params",
    "mlflow_run_id",
    "mlflow_run",
]


def test_split_report_of_a_result() -> None:
    ids = np.array([1, 2, 1, 0], dtype=np.uint8)
    report = SplitReport.of(EvalResult(math.log(2), 0.5, 3), ids, "s" * 64, np.array([1, 2, 2]), 3)
    assert (report.bpc, report.perplexity, report.oov_rate, report.chars) == (1.0, 2.0, 0.25, 3)
    assert list(report.baselines) == ["unigram", "bigram"] and all(b > 0 for b in report.baselines.values())


def test_the_file_is_flat_and_reads_back(tmp_path: Path) -> None:
    split = {"loss_nats": 1.0, "bpc": 1.4427, "perplexity": 2.7, "accuracy": 0.5, "oov_rate": 0.0, "chars": 9}
    report = EvalReport(
        train_sha256="a" * 64,
        val=split | {"sha256": "b" * 64, "baselines": {"unigram": 4.0, "bigram": 3.0}},
        test=split | {"sha256": "c" * 64, "baselines": {"unigram": 4.1, "bigram": 3.1}},
        num_params=10,
        mlflow_run_id="r",
        mlflow_run="training",
    )
    report.write(tmp_path / "eval.json")
    flat = json.loads((tmp_path / "eval.json").read_text())
    assert list(flat) == FLAT_KEYS
    assert flat["val_bpc"] == 1.4427 and flat["bigram_test_bpc"] == 3.1 and flat["test_sha256"] == "c" * 64
    assert EvalReport.read(tmp_path / "eval.json") == report

    del flat["test_accuracy"]
    (tmp_path / "eval.json").write_text(json.dumps(flat))
    with pytest.raises(
        DataError, match=r"eval\.json: not a valid EvalReport: test\.accuracy: must be a number"
    ):
        EvalReport.read(tmp_path / "eval.json")
