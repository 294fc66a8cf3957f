"""What a prompt must be for a generation to start from it: valid Unicode, put in the normal form of the
corpus, and spelled in the vocabulary's characters unless `unknown: unk` reads the others as `<unk>`; and the
sampling options must fit the vocabulary. Every request is checked so, and the vocab stage checks every prompt
params.yaml generates from as soon as the vocabulary exists, not after the models have trained."""

from charlm.data.vocab import Vocabulary
from charlm.errors import CharlmError, ParamsError
from charlm.params.generation import GenerateConfig, SamplingOptions, WritingConfig


class SamplingError(CharlmError):
    """A sampling request that cannot be served: bad values or characters the model never saw."""


def checked(vocab: Vocabulary, prompt: str, options: SamplingOptions) -> str:
    """`prompt` in the normal form of the text the vocabulary was built from; SamplingError when
    no generation can start from it with `options`."""
    if not prompt:
        raise SamplingError("the prompt is empty; give at least one character to start from")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate, as JSON's \ud800 or a mis-decoded argument
        raise SamplingError(
            f"prompt: not valid Unicode: {prompt[err.start]!r} at character {err.start} ({err.reason})"
        ) from None
    prompt = vocab.normalize(prompt)
    if options.top_k is not None and options.top_k > len(vocab):
        raise SamplingError(f"top_k: must be in 1..{len(vocab)} (the vocabulary size), got {options.top_k}")
    missing = vocab.unknown_chars(prompt)
    if missing and options.unknown == "error":
        raise SamplingError(
            f"prompt characters not in the model's vocabulary: {missing!r}"
            " (set unknown to 'unk' to map them to <unk>)"
        )
    return prompt


def check_params(vocab: Vocabulary, generate: GenerateConfig, writing: WritingConfig) -> list[str]:
    """Every prompt of the `generate` and `evaluate.writing` params, with the options it is
    generated with, checked against the corpus's vocabulary: a refusal is a ParamsError naming the
    key and the prompt. Returns a line for each writing prompt with characters the corpus lacks,
    which the judge reads as `<unk>` (docs/architecture.md#what-a-model-writes)."""
    wanted = [("generate.prompts", prompt, generate.options()) for prompt in generate.prompts]
    wanted += [("evaluate.writing.prompts", prompt, options) for prompt, options in writing.options(generate)]
    notes = []
    for key, prompt, options in wanted:
        try:
            normal = checked(vocab, prompt, options)
        except SamplingError as err:
            raise ParamsError(
                f"{key}: {prompt!r} cannot start a generation from this corpus: {err}"
            ) from None
        if missing := vocab.unknown_chars(normal):
            notes.append(f"{key}: {prompt!r} has characters the corpus lacks, read as <unk>: {missing!r}")
    return list(dict.fromkeys(notes))
