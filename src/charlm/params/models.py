"""The `models` section: each entry is the shared `model` and `train` sections with its overrides,
so adding a GRU is a params edit."""

import re
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from charlm.errors import ParamsError
from charlm.params.model import ModelConfig
from charlm.params.train import TrainConfig
from charlm.records import Invalid, Record

MODEL_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class ModelSpec(ModelConfig, TrainConfig):
    """One entry of `models:`: any `model` or `train` key, over the shared sections' values."""

    name: str

    @property
    def model(self) -> ModelConfig:
        return ModelConfig(**self.model_dump(include=set(ModelConfig.model_fields)))

    @property
    def train(self) -> TrainConfig:
        return TrainConfig(**self.model_dump(include=set(TrainConfig.model_fields)))

    def settings(self) -> dict[str, Record]:
        """The entry's settings by section, as MLflow params and `charlm params` show them."""
        return {"model": self.model, "train": self.train}


class Models(Record):
    """The records of the stages that read `models:` (with the two sections its entries extend)."""

    model: ModelConfig
    train: TrainConfig
    models: Annotated[dict[str, ModelSpec], Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _entries_extend_the_shared_sections(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
            return raw  # the fields' own validation names what is wrong
        shared = {
            k: v
            for part in ("model", "train")
            if isinstance(raw.get(part), dict)
            for k, v in raw[part].items()
        }
        entries = {
            name: {**shared, **(overrides or {}), "name": name}
            if isinstance(overrides or {}, dict)
            else overrides
            for name, overrides in raw["models"].items()
        }
        return {**raw, "models": entries}

    @field_validator("models")
    @classmethod
    def _names(cls, entries: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        for name in entries:
            if not MODEL_NAME.match(name):
                raise Invalid(name, "must be named in lowercase letters, digits, - and _")
        return entries

    def spec(self, name: str) -> ModelSpec:
        """The entry a per-model stage was started for (`--model NAME`)."""
        if name not in self.models:
            raise ParamsError(f"models.{name}: no such model (have {', '.join(self.models)})")
        return self.models[name]
