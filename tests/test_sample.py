"""sample: filtering is exact, seeds reproduce, the carried state equals re-feeding the prefix."""

import pytest
import torch

from charlm.errors import ParamsError
from charlm.model import CharLM
from charlm.params import ModelConfig, SamplingOptions
from charlm.sample import SamplingError, filter_logits, generate
from charlm.vocab import Vocabulary

VOCAB = Vocabulary.build("abcdefgh \n")


@pytest.fixture(scope="module")
def model() -> CharLM:
    torch.manual_seed(0)
    return CharLM(
        ModelConfig(cell="gru", embedding_size=8, hidden_size=16, num_layers=2, vocab_size=len(VOCAB))
    ).eval()


def test_top_k_keeps_the_k_largest() -> None:
    logits = torch.tensor([1.0, 5.0, 3.0, 4.0, 2.0])
    kept = torch.isfinite(filter_logits(logits, top_k=2, top_p=None))
    assert kept.tolist() == [False, True, False, True, False]


def test_top_p_keeps_the_smallest_nucleus() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()
    assert torch.isfinite(filter_logits(logits, None, top_p=0.5)).tolist() == [True, False, False, False]
    assert torch.isfinite(filter_logits(logits, None, top_p=0.8)).tolist() == [True, True, False, False]
    assert torch.isfinite(filter_logits(logits, None, top_p=0.81)).tolist() == [True, True, True, False]
    assert torch.isfinite(filter_logits(logits, None, top_p=1.0)).all()


def test_same_seed_same_text_and_unk_never_sampled(model: CharLM) -> None:
    options = SamplingOptions(length=200, temperature=1.5, seed=7)
    first = "".join(generate(model, VOCAB, "abc", options))
    assert first == "".join(generate(model, VOCAB, "abc", options))
    assert len(first) == 200 and "\ufffd" not in first and set(first) <= set(VOCAB.itos[1:])
    assert first != "".join(
        generate(model, VOCAB, "abc", SamplingOptions(length=200, temperature=1.5, seed=8))
    )


def test_carried_state_matches_refeeding_the_whole_prefix(model: CharLM) -> None:
    text = "".join(generate(model, VOCAB, "ab", SamplingOptions(length=30, top_k=1, seed=0)))
    prefix = "ab"
    with torch.no_grad():
        for expected in text:  # greedy decoding from scratch each time: O(n^2), the reference
            logits, _ = model(torch.from_numpy(VOCAB.encode(prefix).astype("int64")).view(1, -1))
            logits[0, -1, 0] = float("-inf")
            assert VOCAB.itos[int(logits[0, -1].argmax())] == expected
            prefix += expected


def test_prompt_errors(model: CharLM) -> None:
    with pytest.raises(SamplingError, match=r"not in the model's vocabulary: \['z', 'Q'\]"):
        list(generate(model, VOCAB, "azQ", SamplingOptions(length=5)))
    assert len("".join(generate(model, VOCAB, "azQ", SamplingOptions(length=5, unknown="unk")))) == 5
    with pytest.raises(SamplingError, match="prompt is empty"):
        list(generate(model, VOCAB, "", SamplingOptions(length=5)))
    with pytest.raises(SamplingError, match=r"top_k: must be in 1\.\.11"):
        list(generate(model, VOCAB, "a", SamplingOptions(length=5, top_k=12)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0}, "temperature: must be > 0"),
        ({"temperature": -1}, "temperature: must be > 0"),
        ({"length": 0}, "length: must be > 0"),
        ({"top_k": 0}, "top_k: must be >= 1"),
        ({"top_p": 0}, r"top_p: must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top_p: must be in \(0, 1\]"),
    ],
)
def test_out_of_range_options(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        SamplingOptions(**kwargs)  # type: ignore[arg-type]
