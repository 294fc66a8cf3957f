"""The evaluation report (`metrics/eval/<model>.json`): what the evaluate stage hands the compare
and register stages, and what `dvc metrics` shows.

In code it is one `SplitReport` per held-out split; on disk it is flat, one metric per key named
`<split>_<metric>` (`val_bpc`, `test_loss_nats`) and `<baseline>_<split>_bpc`, so that `dvc
metrics diff` and `dvc exp show` show each figure as a column.
"""

from typing import Any

import numpy as np
from pydantic import model_serializer, model_validator

from charlm.data.splits import HELD_OUT
from charlm.data.vocab import oov_rate
from charlm.evaluation.baselines import BASELINES
from charlm.evaluation.metrics import EvalResult
from charlm.records import Record

# The per-split figures, in the order the file lists them.
SPLIT_METRICS = ("loss_nats", "bpc", "perplexity", "accuracy", "oov_rate", "chars", "sha256")


def baseline_metric(name: str, split: str) -> str:
    """The name a baseline's bpc on a split has in the file, e.g. `bigram_test_bpc`."""
    return f"{name}_{split}_bpc"


class SplitReport(Record):
    """One held-out split: the model's figures, the ids' hash and each baseline's bpc on them."""

    loss_nats: float
    bpc: float
    perplexity: float
    accuracy: float
    oov_rate: float
    chars: int
    sha256: str  # of the encoded split (`charlm.data.encoded`)
    baselines: dict[str, float]  # bpc by name of BASELINES

    @classmethod
    def of(
        cls, result: EvalResult, ids: np.ndarray, sha256: str, train: np.ndarray, vocab_size: int
    ) -> "SplitReport":
        return cls(
            loss_nats=result.loss_nats,
            bpc=result.bpc,
            perplexity=result.perplexity,
            accuracy=result.accuracy,
            oov_rate=oov_rate(ids),
            chars=result.chars,
            sha256=sha256,
            baselines={name: bpc(train, ids, vocab_size) for name, bpc in BASELINES.items()},
        )


class EvalReport(Record):
    train_sha256: str
    val: SplitReport
    test: SplitReport
    num_params: int
    mlflow_run_id: str | None = None  # the run the figures were logged to
    mlflow_run: str | None = None  # "training": the model's training run; "new": one made for them

    def split(self, name: str) -> SplitReport:
        return {"val": self.val, "test": self.test}[name]

    @model_serializer
    def _flat(self) -> dict[str, Any]:
        flat: dict[str, Any] = {"train_sha256": self.train_sha256}
        for split in HELD_OUT:
            report = self.split(split)
            flat |= {f"{split}_{metric}": getattr(report, metric) for metric in SPLIT_METRICS}
            flat |= {baseline_metric(name, split): bpc for name, bpc in report.baselines.items()}
        return flat | {
            "num_params": self.num_params,
            "mlflow_run_id": self.mlflow_run_id,
            "mlflow_run": self.mlflow_run,
        }

    @model_validator(mode="before")
    @classmethod
    def _nested(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or not all(f"{split}_bpc" in raw for split in HELD_OUT):
            return raw  # already nested, or not a report: the fields' validation says so
        flat = dict(raw)
        for split in HELD_OUT:
            flat[split] = {metric: flat.pop(f"{split}_{metric}", None) for metric in SPLIT_METRICS}
            flat[split]["baselines"] = {
                name: flat.pop(baseline_metric(name, split), None) for name in BASELINES
            }
        return flat
