"""writing: the n-gram judge of generated text flags collapsed text and passes prose."""

import numpy as np
import pytest

from charlm.data.vocab import Vocabulary
from charlm.errors import ParamsError
from charlm.evaluation.writing import NGram, judge
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


def test_every_context_is_a_distribution() -> None:
    ids = np.random.default_rng(0).integers(0, 5, size=500)
    for order in (1, 2, 3):
        probs = np.exp2(-NGram.fit(ids, 5, order).bits[-1])
        assert probs.sum(-1) == pytest.approx(np.ones(probs.shape[:-1]))


def test_a_context_never_seen_backs_off_to_the_shorter_one() -> None:
    ngram = NGram.fit(np.array([1, 2, 1, 2, 1, 2]), 4, 2)
    assert ngram.bits[1][3] == pytest.approx(ngram.bits[0])  # nothing ever followed 3


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


def test_an_order_too_large_for_the_table_names_the_key() -> None:
    with pytest.raises(ParamsError, match=r"evaluate\.writing\.ngram_order: 5 over 100 characters"):
        NGram.fit(np.zeros(10, dtype=np.int64), 100, 5)


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
    passing = judge(train, val, vocab, cfg, *written(vocab, [prose[:300], prose[300:600]]))
    assert passing.failed == 0 and passing.first_failure is None
    assert passing.worst_window_bits <= passing.limit_bits
    report = judge(train, val, vocab, cfg, *written(vocab, [prose[:300], collapsed]))
    assert report.failed == 1
    assert report.worst_window_bits > report.limit_bits + 3
    assert report.first_failure is not None and repr(collapsed[:10])[:-1] in report.first_failure
    assert "1 of 2 texts fail" in report.summary()
