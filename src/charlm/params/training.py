"""The training sections: `arch` (a CharLM's architecture, stored beside its weights), `train`
(optimisation), `models` (each entry those two with its overrides, so adding a GRU is a params
edit) and `distributed` (more than one process in all runs each train stage under torchrun)."""

import itertools
import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from charlm.errors import ParamsError
from charlm.params.base import Positive, PositiveFloat
from charlm.records import Invalid, Record, unknown_key

MODEL_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class ArchConfig(Record):
    cell: Literal["rnn", "lstm", "gru"]
    embedding_size: Positive
    hidden_size: Positive
    num_layers: Positive
    dropout: Annotated[float, Field(ge=0, lt=1)]  # locked: one mask per sequence, on inputs and outputs
    weight_drop: Annotated[float, Field(ge=0, lt=1)]  # DropConnect on the recurrent weights
    input: Literal["embedding", "onehot"]
    tie_weights: bool
    # Adaptive softmax: frequency ranks where a cluster of rarer characters starts (a vocabulary no
    # larger than the first is one full softmax), and how much narrower each cluster's projection is.
    head_cutoffs: Annotated[tuple[Positive, ...], Field(strict=False)]
    head_div: Annotated[float, Field(ge=1, allow_inf_nan=False)]
    # A feed-forward block after the recurrence, this many times hidden_size wide; 0: none.
    feedforward: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _tying_fits(self) -> "ArchConfig":
        if self.tie_weights and self.input != "embedding":
            raise Invalid("tie_weights", "must be false with one-hot input")
        if any(b <= a for a, b in itertools.pairwise(self.head_cutoffs)):
            raise Invalid("head_cutoffs", f"must increase, got {list(self.head_cutoffs)}")
        if self.tie_weights and self.head_cutoffs:
            raise Invalid("tie_weights", "must be false with an adaptive head (set head_cutoffs: [] to tie)")
        if self.tie_weights and self.embedding_size != self.hidden_size:
            raise Invalid(
                "tie_weights",
                "must be false unless embedding_size == hidden_size,"
                f" got {(self.embedding_size, self.hidden_size)}",
            )
        return self

    def describe(self) -> str:
        """The architecture in a line, as a training run's description and the model card say it."""
        return (
            f"{self.cell.upper()}, {self.num_layers} x {self.hidden_size} hidden, {self.input} input"
            f" ({self.embedding_size} wide), dropout {self.dropout:g}, weight drop {self.weight_drop:g}"
            + (f", feed-forward {self.feedforward} x {self.hidden_size}" if self.feedforward else "")
        )


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
    average_last: Annotated[float, Field(ge=0, lt=1)]  # of the schedule: its weights averaged; 0: off
    eval_interval: Positive
    patience: Annotated[int, Field(ge=0)]  # evaluations without improvement before stopping; 0: never
    checkpoint_interval: Positive
    device: Literal["auto", "cpu", "cuda", "mps"]
    precision: Literal["auto", "fp32", "bf16"]
    seed: Annotated[int, Field(ge=0)]  # initial weights and dropout masks; the data's is prepare.seed


class ModelSpec(Record):
    """One entry of `models:`: its name and both sections, the shared ones with the entry's overrides."""

    name: str
    arch: ArchConfig
    train: TrainConfig

    @model_validator(mode="before")
    @classmethod
    def _overrides(cls, raw: Any) -> Any:
        # Overrides are flat, as users write them and `dvc exp run -S models.lstm.hidden_size=…` sets
        # them: each goes to the section that declares it, checked there so an error names it as written.
        if not isinstance(raw, dict):
            return raw
        nested = {key: raw[key] for key in raw.keys() & cls.model_fields.keys()}
        for key in raw.keys() - cls.model_fields.keys():
            section = next((name for name, record in SECTIONS.items() if key in record.model_fields), None)
            if section is None:
                raise unknown_key(
                    str(key), [field for record in SECTIONS.values() for field in record.model_fields]
                )
            SECTIONS[section].check({key: raw[key]})
            if isinstance(nested.get(section), dict):
                nested[section] = {**nested[section], key: raw[key]}
        return nested


SECTIONS: dict[str, type[Record]] = {"arch": ArchConfig, "train": TrainConfig}


class Models(Record):
    """The records of the stages that read `models:` (with the two sections its entries extend)."""

    arch: ArchConfig
    train: TrainConfig
    models: Annotated[dict[str, ModelSpec], Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _entries_extend_the_shared_sections(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
            return raw  # the fields' own validation names what is wrong
        entries = {}
        for name, overrides in raw["models"].items():
            if isinstance(overrides or {}, dict):
                if clash := sorted((overrides or {}).keys() & ModelSpec.model_fields.keys()):
                    raise Invalid(
                        f"models.{name}.{clash[0]}", "unknown key; an entry overrides the sections' keys"
                    )
                overrides = {**(overrides or {}), "name": name, **{s: raw.get(s) for s in SECTIONS}}
            entries[name] = overrides
        return {**raw, "models": entries}

    @field_validator("models")
    @classmethod
    def _names(cls, entries: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        for name in entries:
            if not MODEL_NAME.match(name):
                raise Invalid(name, "must be named in lowercase letters, digits, - and _")
        return entries

    def spec(self, name: str) -> ModelSpec:
        """The entry a per-model stage was started for (`--name NAME`)."""
        if name not in self.models:
            raise ParamsError(f"models.{name}: no such model (have {', '.join(self.models)})")
        return self.models[name]


class DistributedConfig(Record):
    nproc_per_node: Annotated[int, Field(ge=1)]
    nnodes: Annotated[int, Field(ge=1)]
    master_addr: Annotated[str, Field(pattern=r"\S")]  # node 0 as the other nodes reach it
    master_port: Annotated[int, Field(gt=0, lt=65536)]
    backend: Literal["auto", "gloo", "nccl"]

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes
