"""The `evaluate` section: one evaluation layout for every model, so their figures compare, and
the texts every model writes to be judged by (`charlm.evaluation.writing`)."""

from typing import Annotated

from pydantic import Field

from charlm.params.base import Positive, Prompts
from charlm.params.generate import GenerateConfig, SamplingOptions
from charlm.records import Record


class WritingConfig(Record):
    prompts: Prompts  # names and styles the corpus has and lacks
    samples: Annotated[int, Field(ge=0)]  # texts per prompt sampled as `generate` samples, seeded
    ngram_order: Annotated[int, Field(ge=1, le=6)]  # of the training split's model that reads them
    window: Positive  # characters: the judge reads each text's most surprising window of this length
    margin_bits: Annotated[
        float, Field(ge=0, allow_inf_nan=False)
    ]  # above the validation split's worst: a failed text

    def options(self, generate: GenerateConfig) -> list[tuple[str, SamplingOptions]]:
        """Every judged text's prompt and options: per prompt, `samples` texts with the generate
        settings and their own seeds, then a greedy one. Prompt characters the model never saw
        are <unk>: a prompt from outside the corpus is what the judge is for."""
        texts = []
        for p, prompt in enumerate(self.prompts):
            for s in range(self.samples):
                sampled = generate.options(p * self.samples + s)
                texts.append((prompt, sampled.model_copy(update={"unknown": "unk"})))
            greedy = {"top_k": 1, "top_p": None, "temperature": 1.0, "unknown": "unk"}
            texts.append((prompt, generate.options().model_copy(update=greedy)))
        return texts


class EvaluateConfig(Record):
    batch_size: Positive
    seq_len: Positive
    writing: WritingConfig
