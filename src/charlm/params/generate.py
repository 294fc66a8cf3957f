"""The `generate` section, and the sampling options it shares with `charlm generate` and the fields
of a served request: one declaration behind all three."""

from typing import Annotated, Literal

from pydantic import Field

from charlm.params.base import Positive, Prompts
from charlm.records import Record

# Logits over a float32 temperature much below this overflow to infinities (their softmax is NaN);
# from 0.01 down, sampling is greedy to within a character in millions anyway.
MIN_TEMPERATURE = 1e-3
SEEDS = 2**63  # a row's generator takes a 64-bit seed; JSON and MLflow's signatures, a signed one


class SamplingOptions(Record):
    """How to draw characters from a model."""

    length: Positive = Field(description="characters to generate")
    temperature: Annotated[float, Field(ge=MIN_TEMPERATURE, allow_inf_nan=False)] = Field(
        description="below 1 sharpens, above 1 flattens"
    )
    top_k: Annotated[int, Field(ge=1)] | None = Field(description="keep the k most likely characters")
    top_p: Annotated[float, Field(gt=0, le=1)] | None = Field(
        description="keep the smallest set of characters whose probability reaches p"
    )
    seed: Annotated[int, Field(ge=0, lt=SEEDS)] | None = Field(description="fix for reproducible text")
    unknown: Literal["error", "unk"] = Field(description="prompt characters outside the vocabulary")


class GenerateConfig(SamplingOptions):
    """The generate stage: these prompts, each sampled `num_samples` times with its own seed."""

    prompts: Prompts
    num_samples: Positive  # per prompt

    def options(self, index: int = 0) -> SamplingOptions:
        """Options for the index-th sample: the same settings, each sample its own seed."""
        values = self.model_dump(include=set(SamplingOptions.model_fields))
        return SamplingOptions(**values | {"seed": None if self.seed is None else self.seed + index})
