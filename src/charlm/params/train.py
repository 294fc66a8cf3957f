"""The `train` section: optimisation settings every model shares unless its entry overrides them."""

from typing import Annotated, Literal

from pydantic import Field

from charlm.params.base import Positive, PositiveFloat
from charlm.records import Record


class TrainConfig(Record):
    batch_size: Positive
    seq_len: Positive
    learning_rate: PositiveFloat
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)]  # cosine decay ends at learning_rate * min_lr_ratio
    weight_decay: Annotated[float, Field(ge=0)]
    beta1: Annotated[float, Field(ge=0, lt=1)]  # AdamW's moment decay rates
    beta2: Annotated[float, Field(ge=0, lt=1)]
    warmup_steps: Annotated[int, Field(ge=0)]
    max_steps: Positive
    max_time_s: PositiveFloat | None  # a wall-clock budget: stop and finish the schedule by it
    grad_clip: PositiveFloat
    eval_interval: Positive
    patience: Annotated[int, Field(ge=0)]  # evaluations without improvement before stopping; 0: never
    checkpoint_interval: Positive
    device: Literal["auto", "cpu", "cuda", "mps"]
    precision: Literal["auto", "fp32", "bf16"]
    seed: Annotated[int, Field(ge=0)]  # initial weights and dropout masks; the data's is prepare.seed
