"""Reference points for bits per character: add-one unigram and bigram models of the training split.

A character model is only useful if it beats these on the same held-out text; they anchor what a
"good" number is in every evaluation report.
"""

from collections.abc import Callable

import numpy as np


def unigram_bpc(train: np.ndarray, test: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (bits/char) on `test` of the add-one-smoothed character frequencies of `train`."""
    counts = np.bincount(train, minlength=vocab_size).astype(np.float64) + 1.0
    log_p = np.log2(counts / counts.sum())
    return float(-log_p[test].mean())


def bigram_bpc(train: np.ndarray, test: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (bits/char) on `test` of an add-one bigram model P(next | previous) of `train`.

    The first test character, which has no predecessor, is scored by the add-one unigram model.
    """
    train, test = train.astype(np.int64), test.astype(np.int64)
    pairs = np.bincount(train[:-1] * vocab_size + train[1:], minlength=vocab_size * vocab_size)
    counts = pairs.reshape(vocab_size, vocab_size).astype(np.float64) + 1.0
    log_p = np.log2(counts / counts.sum(axis=1, keepdims=True))  # (V prev, V next)
    bits = -log_p[test[:-1], test[1:]].sum() + unigram_bpc(train, test[:1], vocab_size)
    return float(bits / len(test))


# Each baseline by its name in reports, weakest first.
BASELINES: dict[str, Callable[[np.ndarray, np.ndarray, int], float]] = {
    "unigram": unigram_bpc,
    "bigram": bigram_bpc,
}
