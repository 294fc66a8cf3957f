"""The models register chooses between: each model directory with its evaluation report.

Models are chosen on validation data only: the best candidate has the lowest validation bits per
character (ties: fewer parameters). The test figures travel with it, for reporting.
"""

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from charlm.errors import CharlmError, DataError
from charlm.evaluation.report import EvalReport
from charlm.model.directory import ModelInfo, model_sha256, read_info


@dataclass(frozen=True)
class Candidate:
    name: str
    model_dir: Path
    report: EvalReport

    @cached_property
    def info(self) -> ModelInfo:
        return read_info(self.model_dir)

    @cached_property
    def model_sha256(self) -> str:
        return model_sha256(self.model_dir)


def load_candidate(name: str, model_dir: Path, eval_report: Path) -> Candidate:
    if not eval_report.is_file():
        raise DataError(f"{eval_report}: no such file; run evaluate@{name}")
    return Candidate(name, model_dir, EvalReport.read(eval_report))


def pick_best(candidates: list[Candidate]) -> Candidate:
    if not candidates:
        raise CharlmError("no models to register")
    return min(candidates, key=lambda c: (c.report.val.bpc, c.report.num_params))
