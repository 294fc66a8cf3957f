"""prompts: a prompt meets the vocabulary in the corpus's normal form, and every prompt params.yaml
generates from is checked as soon as the vocabulary exists, each refusal naming its key and prompt."""

import pytest

from charlm.data.vocab import Vocabulary
from charlm.errors import ParamsError
from charlm.generation.prompts import SamplingError, check_params, checked
from charlm.params.generation import EvaluateConfig, GenerateConfig, SamplingOptions
from tests.helpers import config


def test_prompts_are_put_in_the_corpus_normal_form() -> None:
    composed = Vocabulary.build("Rom\u00e9o\n", unicode_form="NFC")
    decomposed = "Rome\u0301o"  # the same word as NFD: e, then a combining acute accent
    assert checked(composed, decomposed, config(SamplingOptions, length=5)) == "Rom\u00e9o"
    with pytest.raises(SamplingError, match="not in the model's vocabulary"):
        checked(Vocabulary.build("Rom\u00e9o\n"), decomposed, config(SamplingOptions, length=5))  # no form


CORPUS = Vocabulary.build(
    "\u6625\u7720\u4e0d\u89ba\u66c9\n\u8655\u8655\u805e\u557c\u9ce5\n"
)  # no Latin letter


def params(**generate: object) -> tuple[GenerateConfig, EvaluateConfig]:
    return config(GenerateConfig, **generate), config(EvaluateConfig)


def test_a_generate_prompt_the_corpus_cannot_spell_is_named_with_its_characters() -> None:
    generate, evaluate = params(prompts=["\u6625\u7720", "ROMEO:"])
    with pytest.raises(
        ParamsError, match=r"generate\.prompts: 'ROMEO:' cannot start .*\['R', 'O', 'M', 'E', ':'\]"
    ):
        check_params(CORPUS, generate, evaluate.writing)


def test_a_top_k_beyond_the_vocabulary_is_refused_before_any_model_trains() -> None:
    generate, evaluate = params(prompts=["\u6625\u7720"], top_k=50)
    with pytest.raises(ParamsError, match=r"generate\.prompts: .* top_k: must be in 1\.\.11 .*, got 50"):
        check_params(CORPUS, generate, evaluate.writing)


def test_writing_prompts_the_corpus_cannot_spell_are_read_as_unk_and_named() -> None:
    generate, evaluate = params(prompts=["\u6625\u7720"])
    writing = evaluate.writing.model_copy(update={"prompts": ("\u6625\u7720", "Q: 2 + 2?")})
    notes = check_params(CORPUS, generate, writing)
    assert len(notes) == 1 and "evaluate.writing.prompts: 'Q: 2 + 2?'" in notes[0] and "'+'" in notes[0]
    assert check_params(Vocabulary.build("Q: 2 + 2?\n\u6625\u7720"), generate, writing) == []
