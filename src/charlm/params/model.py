"""The `model` section: a CharLM's architecture, stored beside its weights so that a model
directory rebuilds its model."""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from charlm.params.base import Positive
from charlm.records import Invalid, Record


class ModelConfig(Record):
    cell: Literal["rnn", "lstm", "gru"]
    embedding_size: Positive
    hidden_size: Positive
    num_layers: Positive
    dropout: Annotated[float, Field(ge=0, lt=1)]  # locked: one mask per sequence, on inputs and outputs
    weight_drop: Annotated[float, Field(ge=0, lt=1)]  # DropConnect on the recurrent weights
    input: Literal["embedding", "onehot"]
    tie_weights: bool

    @model_validator(mode="after")
    def _tying_fits(self) -> "ModelConfig":
        if self.tie_weights and self.input != "embedding":
            raise Invalid("tie_weights", "must be false with one-hot input")
        if self.tie_weights and self.embedding_size != self.hidden_size:
            raise Invalid(
                "tie_weights",
                "must be false unless embedding_size == hidden_size,"
                f" got {(self.embedding_size, self.hidden_size)}",
            )
        return self
