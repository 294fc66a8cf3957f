"""Reference points for bits per character: add-one unigram and bigram models of the training split. A
character model is only useful if it beats these on the same held-out text; they anchor what a "good" number
is in every evaluation report. Both read the splits' n-gram counts (`charlm.data.ngrams`), which the vocab
stage gathers while it encodes, never the splits again; the bigram model visits only the pairs the held-out
split holds, never a V x V table."""

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the comparison and the card read the baselines' names: no torch for them
    from charlm.data.ngrams import NgramCounts

ORDER = 2  # the longest run of characters a baseline reads: the counts it needs


def _unigram_bits(train: "NgramCounts") -> np.ndarray:
    """-log2 P(character) of the add-one-smoothed character frequencies of `train`, (V,)."""
    counts = train.unigram().astype(np.float64) + 1.0
    return -np.log2(counts / counts.sum())


def unigram_bpc(train: "NgramCounts", test: "NgramCounts") -> float:
    """Cross-entropy (bits/char) on `test` of the add-one-smoothed character frequencies of `train`."""
    return float((test.unigram() * _unigram_bits(train)).sum() / test.total)


def bigram_bpc(train: "NgramCounts", test: "NgramCounts") -> float:
    """Cross-entropy (bits/char) on `test` of an add-one bigram model P(next | previous) of `train`. The first
    test character, which has no predecessor, is scored by the add-one unigram model."""
    size = train.vocab_size
    pairs, seen = test.runs(2), train.runs(2)
    before = np.zeros(size, dtype=np.float64)  # how often each character is followed by one in train
    np.add.at(before, seen.codes // size, seen.counts)
    bits = -np.log2((seen.count(pairs.codes) + 1.0) / (before[pairs.codes // size] + size))
    first = _unigram_bits(train)[test.head[:1]].sum()
    return float(((pairs.counts * bits).sum() + first) / test.total)


# Each baseline by its name in reports, weakest first.
BASELINES: dict[str, Callable[["NgramCounts", "NgramCounts"], float]] = {
    "unigram": unigram_bpc,
    "bigram": bigram_bpc,
}
