"""The evaluation report (`metrics/eval/<model>.json`): what the evaluate stage hands the compare
and register stages, and what `dvc metrics` shows (each figure a column: `val.bpc`,
`writing.failed`, `dynamic.bpc`). Its MLflow metrics are the same figures, `val_bpc` and so on."""

from charlm.evaluation.metrics import EvalResult
from charlm.evaluation.ranking import Standing
from charlm.records import Record


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

    def headline(self) -> str:
        """One line: how many texts failed, and the worst, against the validation split's line."""
        verdict = (
            f"{self.failed} of {self.texts} texts fail" if self.failed else f"all {self.texts} texts pass"
        )
        text = (
            f"{verdict}: the most surprising window reads at {self.worst_window_bits:.2f} bits/char"
            f" (the validation split's worst {self.val_worst_window_bits:.2f}, the limit {self.limit_bits:.2f})"
        )
        return text + (f"; the first failure: {self.first_failure}" if self.first_failure else "")


class EvalReport(Record):
    name: str  # the `models:` entry
    model_dir: str  # the model directory the figures are of, as dvc.yaml names it
    val: SplitReport
    test: SplitReport
    writing: WritingReport
    # The start of the test split (`evaluate.dynamic.chars`) read in order as one stream, by the
    # model as trained and by the model learning as it reads (`charlm.evaluation.dynamic`).
    dynamic_static: EvalResult
    dynamic: EvalResult
    num_params: int
    mlflow_run_id: str  # the run the figures were logged to
    mlflow_run: str  # "training": the model's training run; "new": one made for them

    def split(self, name: str) -> SplitReport:
        return {"val": self.val, "test": self.test}[name]

    @property
    def standing(self) -> Standing:
        return Standing(self.val.bpc, self.num_params, self.val.sha256, self.writing.failed)
