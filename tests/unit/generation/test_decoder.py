"""decoder and sampling: filtering and sampling are exact per row, seeds reproduce alone or in any
batch, the carried state equals re-feeding the prefix."""

import itertools
from collections import Counter

import pytest
import torch

from charlm.data.vocab import UNK_ID
from charlm.errors import ParamsError
from charlm.generation.decoder import PROMPT_SLICE, Decoder, generate, generate_all, task_for
from charlm.generation.prompts import SamplingError
from charlm.generation.sampling import sample_next
from charlm.model.directory import load_model_dir
from charlm.model.int8 import Int8Step
from charlm.model.network import CharLM
from charlm.params.generation import SamplingOptions
from tests.helpers import REPO, config, small_vocab, tiny_model

VOCAB = small_vocab()


@pytest.fixture(
    scope="module",
    params=[{}, {"head_cutoffs": (4, 8)}, {"feedforward": 3}],
    ids=["softmax", "adaptive", "feedforward"],
)
def model(request: pytest.FixtureRequest) -> CharLM:
    return tiny_model("gru", **request.param)


def frequencies(
    logits: list[float], temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> dict[int, float]:
    """How often each id is drawn for evenly spaced uniforms: the sampled distribution, exactly."""
    n, vocab = 10_000, len(logits)

    def column(value: float) -> torch.Tensor:
        return torch.full((n, 1), value)

    ids = sample_next(
        torch.tensor(logits).expand(n, vocab),
        column(temperature),
        column(vocab if top_k is None else top_k),
        column(2.0 if top_p is None else top_p),
        (torch.arange(n) + 0.5) / n,
    )
    return {i: count / n for i, count in sorted(Counter(ids.tolist()).items())}


def test_top_k_keeps_the_k_largest_with_their_renormalised_probabilities() -> None:
    freq = frequencies([9.0, 1.0, 5.0, 3.0, 4.0, 2.0], top_k=2)  # id 0 is <unk>: never drawn
    expected = torch.softmax(torch.tensor([5.0, 4.0]), -1).tolist()
    assert list(freq) == [2, 4] and freq[2] == pytest.approx(expected[0], abs=1e-3)


def test_top_p_keeps_the_smallest_nucleus() -> None:
    logits = [0.0, *torch.tensor([0.5, 0.3, 0.15, 0.05]).log().tolist()]
    assert list(frequencies(logits, top_p=0.5)) == [1]
    assert list(frequencies(logits, top_p=0.8)) == [1, 2]
    assert list(frequencies(logits, top_p=0.81)) == [1, 2, 3]
    full = frequencies(logits, top_p=1.0)
    assert full == frequencies(logits) and full[4] == pytest.approx(0.05, abs=1e-3)


def test_temperature_scales_the_logits() -> None:
    logits = [0.0, 2.0, 1.0, 0.0]
    freq = frequencies(logits, temperature=0.5)
    expected = torch.softmax(torch.tensor(logits[1:]) / 0.5, -1).tolist()
    assert [freq[i] for i in (1, 2, 3)] == pytest.approx(expected, abs=1e-3) and UNK_ID not in freq


def test_each_row_samples_with_its_own_settings() -> None:
    logits = torch.tensor([[0.0, 3.0, 2.0, 1.0]] * 3)
    u = torch.tensor([0.99, 0.99, 0.99])
    ids = sample_next(
        logits,
        torch.tensor([[1.0], [1.0], [100.0]]),
        torch.tensor([[1], [4], [4]]),
        torch.tensor([[2.0], [2.0], [2.0]]),
        u,
    )
    assert ids.tolist() == [1, 3, 3]  # greedy; the tail; near-uniform at a high temperature


def test_same_seed_same_text_and_unk_never_sampled(model: CharLM) -> None:
    options = config(SamplingOptions, length=200, temperature=1.5, seed=7)
    first = "".join(generate(model, VOCAB, "abc", options))
    assert first == "".join(generate(model, VOCAB, "abc", options))
    assert len(first) == 200 and "\ufffd" not in first and set(first) <= set(VOCAB.itos[1:])
    assert first != "".join(
        generate(model, VOCAB, "abc", config(SamplingOptions, length=200, temperature=1.5, seed=8))
    )


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_a_seeded_row_gives_the_same_text_alone_or_batched(model: CharLM, int8: bool) -> None:
    options = config(SamplingOptions, length=150, temperature=1.2, top_k=6, seed=11)
    step = Int8Step(model) if int8 else None
    single = Decoder(model, VOCAB, step)
    only = single.add(task_for(VOCAB, "abc", options))
    while single.rows:
        single.step()
    alone = "".join(only.chars)
    decoder = Decoder(model, VOCAB, step)
    for n, prompt in enumerate(["h", "gg\nab", "a" * 40]):  # other prompts, lengths and options
        decoder.add(task_for(VOCAB, prompt, config(SamplingOptions, length=40 + 100 * n, top_p=0.9, seed=n)))
    for _ in range(7):  # it joins a batch that is already running...
        decoder.step()
    row = decoder.add(task_for(VOCAB, "abc", options))
    decoder.add(task_for(VOCAB, "b", config(SamplingOptions, length=300)))  # ...and outlives some rows
    while not row.done:
        decoder.step()
    assert "".join(row.chars) == alone and len(decoder.rows) == 2


def test_a_seeded_text_in_fp32_is_the_one_it_always_was() -> None:
    # A trained model of an earlier release (tests/fixtures); the text as the decoder wrote it before
    # its step could be int8.
    loaded = load_model_dir(REPO / "tests/fixtures/model-format-3")
    options = SamplingOptions(length=80, temperature=0.8, top_k=None, top_p=0.95, seed=7, unknown="error")
    text = "".join(generate(loaded.net, loaded.vocab, "To be", options))
    assert text == "u ,i:t ,h.ns  tsiqnq.teutoaoirenuhbetqt,bq nbo,,e:q.ah trsbns,orh,: ..tsnq,.,,bs"


def test_generate_all_gives_each_text_its_own_generation_and_counts_them(model: CharLM) -> None:
    wanted = [("ab", config(SamplingOptions, length=30, seed=n)) for n in range(3)]
    wanted.append(("a" * 40, config(SamplingOptions, length=70, seed=5)))
    reports: list[tuple[int, int]] = []
    texts = generate_all(model, VOCAB, wanted, lambda *r: reports.append(r))
    assert texts == ["".join(generate(model, VOCAB, prompt, options)) for prompt, options in wanted]
    assert reports[-1] == (160, 160) and all(a[0] <= b[0] for a, b in itertools.pairwise(reports))


LONG_PROMPT = "abc\nd" * 10  # its head is fed in slices through the module, the rest by steps


@pytest.mark.parametrize("prompt", ["ab", LONG_PROMPT], ids=["stepped", "long"])
def test_carried_state_matches_refeeding_the_whole_prefix(model: CharLM, prompt: str) -> None:
    assert len(LONG_PROMPT) > 2 * PROMPT_SLICE
    text = "".join(generate(model, VOCAB, prompt, config(SamplingOptions, length=30, top_k=1, seed=0)))
    prefix = prompt
    with torch.no_grad():
        for expected in text:  # greedy decoding from scratch each time: O(n^2), the reference
            logits, _ = model(torch.from_numpy(VOCAB.encode(prefix).astype("int64")).view(1, -1))
            logits[0, -1, 0] = float("-inf")
            assert VOCAB.itos[int(logits[0, -1].argmax())] == expected
            prefix += expected


def test_long_prompts_go_in_slices_one_per_step_and_change_no_other_row(
    model: CharLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    slices: list[list[int]] = []  # per step, the length of each pass of the module's recurrence
    recurrence = model.recurrence

    def counted(idx: torch.Tensor, hidden: object = None) -> object:
        slices[-1].append(idx.size(1))
        return recurrence(idx, hidden)

    monkeypatch.setattr(model, "recurrence", counted)
    short = config(SamplingOptions, length=60, seed=3)
    long = [(("abcdefgh \n" * 30)[: 300 - n], config(SamplingOptions, length=20, seed=n)) for n in range(2)]
    decoder = Decoder(model, VOCAB)
    row = decoder.add(task_for(VOCAB, "ab", short))
    longs = [decoder.add(task_for(VOCAB, prompt, options)) for prompt, options in long]
    while decoder.rows:
        slices.append([])
        decoder.step()
    assert max(len(s) for s in slices) == 1 and max(max(s, default=0) for s in slices) == PROMPT_SLICE
    assert "".join(row.chars) == "".join(generate(model, VOCAB, "ab", short))  # untouched beside them
    for got, (prompt, options) in zip(longs, long, strict=True):
        assert "".join(got.chars) == "".join(generate(model, VOCAB, prompt, options))


def test_prompt_errors(model: CharLM) -> None:
    with pytest.raises(SamplingError, match=r"not in the model's vocabulary: \['z', 'Q'\]"):
        list(generate(model, VOCAB, "azQ", config(SamplingOptions, length=5)))
    assert len("".join(generate(model, VOCAB, "azQ", config(SamplingOptions, length=5, unknown="unk")))) == 5
    with pytest.raises(SamplingError, match="prompt is empty"):
        list(generate(model, VOCAB, "", config(SamplingOptions, length=5)))
    with pytest.raises(SamplingError, match=r"top_k: must be in 1\.\.12"):
        list(generate(model, VOCAB, "a", config(SamplingOptions, length=5, top_k=13)))
    unk = config(SamplingOptions, length=5, unknown="unk")  # not even <unk> takes a lone surrogate
    with pytest.raises(SamplingError, match=r"prompt: not valid Unicode: '\\ud800' at character 1"):
        list(generate(model, VOCAB, "a\ud800", unk))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0}, "temperature: must be >= 0.001, got 0"),
        ({"temperature": -1}, "temperature: must be >= 0.001"),
        ({"temperature": 1e-300}, "temperature: must be >= 0.001, got 1e-300"),  # float32 0: NaN logits
        ({"temperature": float("inf")}, "temperature: must be a finite number, got inf"),
        ({"temperature": float("nan")}, "temperature: must be a finite number, got nan"),
        ({"seed": 2**64}, "seed: must be < 9223372036854775808, got 18446744073709551616"),
        ({"seed": -(2**70)}, "seed: must be >= 0, got -1180591620717411303424"),
        ({"length": 0}, "length: must be > 0"),
        ({"top_k": 0}, "top_k: must be >= 1"),
        ({"top_p": 0}, "top_p: must be > 0, got 0"),
        ({"top_p": 1.5}, "top_p: must be <= 1, got 1.5"),
    ],
)
def test_out_of_range_options(kwargs: dict[str, float], message: str) -> None:
    """Every value a request or a param can hold has a range: the edges are refused by name."""
    with pytest.raises(ParamsError, match=message):
        SamplingOptions.parse(config(SamplingOptions).model_dump() | kwargs)
