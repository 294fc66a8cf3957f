"""The models register chooses between: each model directory with its evaluation report, chosen on
validation data by its `Standing`; the test figures travel with it, for reporting.
"""

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from charlm.errors import CharlmError
from charlm.evaluation.report import EvalReport
from charlm.model.directory import ModelInfo, model_sha256, read_info


@dataclass(frozen=True)
class Candidate:
    report: EvalReport

    @property
    def name(self) -> str:
        return self.report.model

    @property
    def model_dir(self) -> Path:
        return Path(self.report.model_dir)

    @cached_property
    def info(self) -> ModelInfo:
        return read_info(self.model_dir)

    @cached_property
    def model_sha256(self) -> str:
        return model_sha256(self.model_dir)


def pick_best(candidates: list[Candidate]) -> Candidate:
    if not candidates:
        raise CharlmError("no models to register")
    return min(candidates, key=lambda c: c.report.standing.key)
