"""writing: the n-gram judge of generated text flags collapsed text and passes prose."""

import itertools

import numpy as np
import pytest

from charlm.data.vocab import Vocabulary
from charlm.errors import ParamsError
from charlm.evaluation.ngram import NGram
from charlm.evaluation.writing import judge
from charlm.params.generation import EvaluateConfig, GenerateConfig
from tests import corpora
from tests.helpers import config


@pytest.fixture(scope="module")
def text() -> str:
    # Prose with rare characters in it, and more of it after the 60,000 the judge learns from.
    return corpora.play(70_000).replace("Sir", "&c", 3)


@pytest.fixture(scope="module")
def vocab(text: str) -> Vocabulary:
    return Vocabulary.build(text + "Z9")


def witten_bell(ids: list[int], vocab_size: int, order: int, text: list[int]) -> list[float]:
    """P(w | h) of each character of `text`, by hand from the definition, over dense tables."""
    tables = [np.zeros((vocab_size,) * n) for n in range(1, order + 1)]
    for n, table in enumerate(tables, start=1):
        for i in range(len(ids) - n + 1):
            table[tuple(ids[i : i + n])] += 1
    probs = []
    for i, w in enumerate(text):
        p = (tables[0][w] + 1) / (len(ids) + vocab_size)
        for n in range(2, min(i + 1, order) + 1):
            h = tuple(text[i - n + 1 : i])
            seen, kinds = tables[n - 1][h].sum(), np.count_nonzero(tables[n - 1][h])
            p = (tables[n - 1][(*h, w)] + kinds * p) / (seen + kinds) if seen else p
        probs.append(p)
    return probs


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_probabilities_are_witten_bells(order: int) -> None:
    rng = np.random.default_rng(order)
    ids, text = rng.integers(0, 5, size=300), rng.integers(0, 5, size=60)
    got = NGram.fit(ids, 5, order).probabilities(text)
    assert got.tolist() == pytest.approx(witten_bell(ids.tolist(), 5, order, text.tolist()), rel=1e-12)


def test_every_context_is_a_distribution() -> None:
    ids = np.random.default_rng(0).integers(0, 5, size=500)
    for order in (1, 2, 3):
        ngram = NGram.fit(ids, 5, order)
        for context in itertools.product(range(5), repeat=order - 1):
            p = [ngram.probabilities(np.array([*context, w]))[-1] for w in range(5)]
            assert sum(p) == pytest.approx(1.0)


def test_a_context_never_seen_backs_off_to_the_shorter_one() -> None:
    ngram = NGram.fit(np.array([1, 2, 1, 2, 1, 2]), 4, 2)
    after_3 = [ngram.probabilities(np.array([3, w]))[-1] for w in range(4)]  # nothing ever followed 3
    assert after_3 == pytest.approx(ngram.unigram.tolist())


def test_read_streams_in_chunks_as_it_reads_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = np.random.default_rng(1).integers(0, 6, size=1000)
    ngram = NGram.fit(ids, 6, 3)
    whole = ngram.read(ids, 50, start=7)
    monkeypatch.setattr("charlm.data.ngrams.BLOCK", 64)
    assert ngram.read(ids, 50, start=7) == pytest.approx(whole)
    bits = np.concatenate(list(ngram._bits(ids, 7)))
    assert whole[0] == pytest.approx(bits.mean())
    assert whole[1] == pytest.approx(max(bits[i : i + 50].mean() for i in range(len(bits) - 49)))


def test_a_text_shorter_than_the_window_is_read_whole() -> None:
    ngram = NGram.fit(np.arange(4).repeat(10), 4, 2)
    mean, worst = ngram.read(np.array([0, 1, 2]), 64)
    assert worst == mean


def test_an_order_whose_runs_have_no_code_names_the_key() -> None:
    with pytest.raises(ParamsError, match=r"evaluate\.writing\.ngram_order: runs of 5 over 9,202 characters"):
        NGram.fit(np.zeros(10, dtype=np.int64), 9202, 5)


def written(vocab: Vocabulary, texts: list[str]) -> tuple[list, list[str]]:
    wanted = config(EvaluateConfig).writing.options(config(GenerateConfig))
    return wanted[: len(texts)], texts


@pytest.mark.parametrize(
    "collapsed",
    [
        "&" * 300,  # a rare character feeding itself
        "ZHOZ&ZZZ9Z*Z9ZZZ&Z9Z" * 15,  # noise of rare characters
        "Good night. " + "&Z9(&&(9Z&&" * 8 + "Sweet love.\n" * 10,  # a burst inside prose
    ],
)
def test_collapsed_text_fails_and_prose_passes(text: str, vocab: Vocabulary, collapsed: str) -> None:
    cut, end = text.index("\n", 54_000), text.index("\n", 60_000)
    train, val = vocab.encode(text[:cut]), vocab.encode(text[cut:end])
    cfg = config(EvaluateConfig).writing
    prose = text[end + 1 :]  # text neither split holds, in their style
    reports: list[tuple[int, int]] = []
    passing = judge(
        train, val, vocab, cfg, *written(vocab, [prose[:300], prose[300:600]]), lambda *r: reports.append(r)
    )
    assert reports[-1] == (len(train) + len(val),) * 2  # both splits read
    assert passing.failed == 0 and passing.first_failure is None
    assert passing.worst_window_bits <= passing.limit_bits
    report = judge(train, val, vocab, cfg, *written(vocab, [prose[:300], collapsed]))
    assert report.failed == 1
    assert report.worst_window_bits > report.limit_bits + 3
    assert report.first_failure is not None and repr(collapsed[:10])[:-1] in report.first_failure
    assert "1 of 2 texts fail" in report.headline()
