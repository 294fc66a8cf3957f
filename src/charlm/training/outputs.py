"""What the train stage writes for later stages: its summary record and its curves.

A curve is a CSV with a `step` column and the fields of its point class, one row per logged
step; the field names are the metric names everywhere (history, CSV header, MLflow).
"""

from dataclasses import dataclass
from pathlib import Path

from charlm.records import Record


@dataclass(frozen=True)
class TrainPoint:
    train_loss_nats: float
    lr: float


@dataclass(frozen=True)
class ValPoint:
    val_loss_nats: float
    val_bpc: float


CURVES: dict[str, type[TrainPoint] | type[ValPoint]] = {"train": TrainPoint, "val": ValPoint}


class TrainSummary(Record):
    """`metrics/train/<model>.json`: how training went, for `dvc metrics` and the comparison."""

    best_val_loss_nats: float
    best_val_bpc: float
    best_step: int
    steps: int
    train_chars: int  # characters trained on, over every rank
    wall_time_s: float  # steps, evaluation and checkpoints, over every resumed segment
    train_chars_per_sec: float  # in training steps alone
    num_params: int
    stopped_early: int  # 1 when patience ran out before max_steps


@dataclass(frozen=True)
class TrainOutputs:
    model_dir: Path  # the best-by-validation model, exported for evaluation and serving
    checkpoint_dir: Path  # resumable state (persisted across DVC runs)
    metrics: Path  # TrainSummary
    train_curve: Path  # step and the fields of TrainPoint
    val_curve: Path  # step and the fields of ValPoint

    @property
    def curves(self) -> dict[str, Path]:
        return {"train": self.train_curve, "val": self.val_curve}
