"""baselines: add-one unigram and bigram bits per char against hand computation."""

import math

import numpy as np
import pytest

from charlm.data.ngrams import NgramCounts
from charlm.evaluation.baselines import bigram_bpc, unigram_bpc


def counts(ids: list[int] | np.ndarray, vocab_size: int) -> NgramCounts:
    return NgramCounts.of(np.asarray(ids), vocab_size, 2)


def test_unigram_by_hand() -> None:
    train = np.array([1, 1, 2])  # counts+1 over V=3: [1, 3, 2] / 6
    test = np.array([1, 2])
    assert unigram_bpc(counts(train, 3), counts(test, 3)) == pytest.approx(
        -(math.log2(3 / 6) + math.log2(2 / 6)) / 2
    )


def test_bigram_by_hand() -> None:
    train = np.array([1, 2, 1, 2])  # pairs: (1,2) x2, (2,1) x1
    test = np.array([1, 2, 1])
    p_first = 3 / 7  # unigram add-one: counts [0,2,2] + 1 -> [1,3,3] / 7
    p_12 = (2 + 1) / (2 + 3)  # row 1: counts [0,0,2] + 1
    p_21 = (1 + 1) / (1 + 3)  # row 2: counts [0,1,0] + 1
    expected = -(math.log2(p_first) + math.log2(p_12) + math.log2(p_21)) / 3
    assert bigram_bpc(counts(train, 3), counts(test, 3)) == pytest.approx(expected)


def test_bigram_beats_unigram_on_structured_text() -> None:
    ids = np.tile(np.arange(1, 8), 200)
    assert bigram_bpc(counts(ids, 8), counts(ids, 8)) < unigram_bpc(counts(ids, 8), counts(ids, 8))
