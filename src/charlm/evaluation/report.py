"""The evaluation report (`metrics/eval/<model>.json`): what the evaluate stage hands the compare
and register stages, and what `dvc metrics` shows.

In code it is one `SplitReport` per held-out split, the `WritingReport` of what the model writes
and the `DynamicReport`; on disk it is flat, one metric per key (`val_bpc`, `writing_failed`,
`dynamic_bpc`), so that `dvc metrics diff` and `dvc exp show` show each figure as a column."""

from typing import Any

from pydantic import model_serializer, model_validator

from charlm.data.layout import HELD_OUT
from charlm.evaluation.metrics import EvalResult
from charlm.evaluation.ranking import Standing
from charlm.records import Record

# A split's keys on disk, in this order; bpc and perplexity are derived from loss_nats on reading.
FIGURES = ("loss_nats", "bpc", "perplexity", "accuracy", "chars", "sha256")


class SplitReport(EvalResult):
    """The model's figures on one held-out split, and the hash of the ids they were measured on."""

    sha256: str  # of the encoded split (`charlm.data.report`)


class WritingReport(Record):
    """How a model's texts read to the n-gram model of the training split, beside the validation
    split; a text fails when its worst window reads above `limit_bits`."""

    texts: int
    failed: int
    worst_window_bits: float  # the texts' most surprising window, mean bits per character
    val_worst_window_bits: float  # the validation split's most surprising window
    limit_bits: float  # the validation split's worst + `evaluate.writing.margin_bits`
    mean_bits: float  # over every character of the texts
    val_mean_bits: float  # over every character of the validation split
    first_failure: str | None  # the first text that failed: its prompt, how it was drawn, how it starts

    def summary(self) -> str:
        """One line: how many texts failed, and the worst, against the validation split's line."""
        verdict = (
            f"{self.failed} of {self.texts} texts fail" if self.failed else f"all {self.texts} texts pass"
        )
        text = (
            f"{verdict}: the most surprising window reads at {self.worst_window_bits:.2f} bits/char"
            f" (the validation split's worst {self.val_worst_window_bits:.2f}, the limit {self.limit_bits:.2f})"
        )
        return text + (f"; the first failure: {self.first_failure}" if self.first_failure else "")


class DynamicReport(Record):
    """The start of the test split read in order as one stream, by the model as trained and by the
    model learning as it reads (`charlm.evaluation.dynamic`)."""

    chars: int
    static_bpc: float
    bpc: float


# The reports whose keys on disk are prefixed with their field's name.
PREFIXED: dict[str, type[Record]] = {"writing": WritingReport, "dynamic": DynamicReport}


class EvalReport(Record):
    model: str  # the `models:` entry
    model_dir: str  # the model directory the figures are of, as dvc.yaml names it
    val: SplitReport
    test: SplitReport
    writing: WritingReport
    dynamic: DynamicReport
    num_params: int
    mlflow_run_id: str  # the run the figures were logged to
    mlflow_run: str  # "training": the model's training run; "new": one made for them

    def split(self, name: str) -> SplitReport:
        return {"val": self.val, "test": self.test}[name]

    @property
    def standing(self) -> Standing:
        return Standing(self.val.bpc, self.num_params, self.val.sha256, self.writing.failed)

    @model_serializer
    def _flat(self) -> dict[str, Any]:
        flat: dict[str, Any] = {"model": self.model, "model_dir": self.model_dir}
        for split in HELD_OUT:
            flat |= {f"{split}_{metric}": getattr(self.split(split), metric) for metric in FIGURES}
        for prefix in PREFIXED:
            flat |= {f"{prefix}_{metric}": value for metric, value in getattr(self, prefix)}
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
            figures = {metric: flat.pop(f"{split}_{metric}", None) for metric in FIGURES}
            flat[split] = {metric: figures[metric] for metric in SplitReport.model_fields}
        for prefix, record in PREFIXED.items():
            flat[prefix] = {metric: flat.pop(f"{prefix}_{metric}", None) for metric in record.model_fields}
        return flat
