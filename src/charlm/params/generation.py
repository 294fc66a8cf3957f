"""The `generate` and `evaluate` sections. The sampling options are one declaration behind the generate stage,
`charlm generate` and a served request's fields; `evaluate` lays out one evaluation for every model, so their
figures compare, and the texts every model writes to be judged by (`charlm.evaluation.writing`)."""

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

    def seeded(self, prompts: tuple[str, ...], per_prompt: int) -> list[tuple[str, SamplingOptions]]:
        """`per_prompt` texts after each of `prompts` with these settings, the texts' seeds in turn."""
        return [
            (prompt, self.options(p * per_prompt + s))
            for p, prompt in enumerate(prompts)
            for s in range(per_prompt)
        ]

    def wanted(self) -> list[tuple[str, SamplingOptions]]:
        return self.seeded(self.prompts, self.num_samples)


class WritingConfig(Record):
    prompts: Prompts  # names and styles the corpus has and lacks
    samples: Annotated[int, Field(ge=0)]  # texts per prompt sampled as `generate` samples, seeded
    ngram_order: Annotated[int, Field(ge=1, le=6)]  # of the training split's model that reads them
    window: Positive  # characters: the judge reads each text's most surprising window of this length
    # Above the validation split's worst: a failed text.
    margin_bits: Annotated[float, Field(ge=0, allow_inf_nan=False)]

    def options(self, generate: GenerateConfig) -> list[tuple[str, SamplingOptions]]:
        """Every judged text's prompt and options: per prompt, `samples` texts with the generate
        settings and their own seeds, then a greedy one. Prompt characters the model never saw
        are <unk>: a prompt from outside the corpus is what the judge is for."""
        sampled = generate.seeded(self.prompts, self.samples)
        greedy = generate.options().model_copy(update={"top_k": 1, "top_p": None, "temperature": 1.0})
        texts = [
            text
            for p, prompt in enumerate(self.prompts)
            for text in [*sampled[p * self.samples : (p + 1) * self.samples], (prompt, greedy)]
        ]
        return [(prompt, options.model_copy(update={"unknown": "unk"})) for prompt, options in texts]


class DynamicConfig(Record):
    chars: Positive  # of the test split, from its start: dynamic evaluation reads one stream
    seq_len: Positive  # characters scored between two updates
    learning_rate: Annotated[float, Field(gt=0, le=100)]  # SGD's, on each scored segment
    decay: Annotated[float, Field(ge=0, le=1)]  # per segment, the pull back toward the trained weights


class EvaluateConfig(Record):
    batch_size: Positive
    seq_len: Positive
    writing: WritingConfig
    dynamic: DynamicConfig
