"""What the train stage writes for later stages: its summary record and its curves. A curve is a CSV with a
`step` column and the fields of its point class, one row per logged step; the field names are the metric names
everywhere (history, CSV header, MLflow). Validation during training is `train_val_bpc`: `val_bpc` is the
evaluation of the exported model."""

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

from charlm.files import replace_dir, write_csv
from charlm.records import Record


@dataclass(frozen=True)
class TrainPoint:
    train_loss_nats: float
    learning_rate: float


@dataclass(frozen=True)
class ValPoint:
    train_val_loss_nats: float
    train_val_bpc: float


CURVES: dict[str, type[TrainPoint] | type[ValPoint]] = {"train": TrainPoint, "val": ValPoint}


class TrainSummary(Record):
    """`metrics/train/<model>.json`: how training went, for `dvc metrics` and the comparison."""

    name: str  # the `models:` entry
    best_train_val_loss_nats: float
    best_train_val_bpc: float
    best_step: int
    steps: int
    train_chars: int  # characters trained on, over every rank
    wall_time_s: float  # steps, evaluation and checkpoints, over every resumed segment
    train_chars_per_sec: float  # in training steps alone
    num_params: int
    stopped_early: bool  # patience ran out before max_steps
    # What the figures were computed on: the same params give other figures on other hardware.
    device: str
    precision: str  # bf16 or fp32, as `train.precision` resolved
    processor: str  # the CPU's model and its bf16 support, or the GPU's name
    torch_threads: int
    torch_version: str


@dataclass(frozen=True)
class TrainOutputs:
    model_dir: Path  # the best-by-validation model, exported for evaluation and serving
    checkpoint_dir: Path  # resumable state (persisted across DVC runs)
    metrics: Path  # TrainSummary
    train_curve: Path  # step and the fields of TrainPoint
    val_curve: Path  # step and the fields of ValPoint

    def write_all(self, best_dir: Path, summary: TrainSummary, history: dict[str, list[list[float]]]) -> None:
        """The best model (exported to `best_dir`), the summary, and each curve's points (a step,
        then its point's fields) as its CSV."""
        with replace_dir(self.model_dir) as staging:
            shutil.copytree(best_dir, staging, dirs_exist_ok=True)
        summary.write(self.metrics)
        for name, path in {"train": self.train_curve, "val": self.val_curve}.items():
            write_csv(path, ["step", *(f.name for f in dataclasses.fields(CURVES[name]))], history[name])
