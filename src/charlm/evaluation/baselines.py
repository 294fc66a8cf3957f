"""Reference points for bits per character: add-one unigram and bigram models of the training split.

A character model is only useful if it beats these on the same held-out text; they anchor what a
"good" number is in every evaluation report.
"""

from collections.abc import Callable, Iterator

import numpy as np

CHUNK = 1 << 24  # ids at a time: the splits are memory-mapped, and may be larger than memory


def _pairs(ids: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every (previous, next) pair of `ids`, as int64 arrays a chunk at a time."""
    for start in range(0, len(ids) - 1, CHUNK):
        window = ids[start : start + CHUNK + 1].astype(np.int64)
        yield window[:-1], window[1:]


def unigram_bpc(train: np.ndarray, test: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (bits/char) on `test` of the add-one-smoothed character frequencies of `train`."""
    counts = sum(np.bincount(train[i : i + CHUNK], minlength=vocab_size) for i in range(0, len(train), CHUNK))
    counts = counts.astype(np.float64) + 1.0
    log_p = np.log2(counts / counts.sum())
    return float(-sum(log_p[test[i : i + CHUNK]].sum() for i in range(0, len(test), CHUNK)) / len(test))


def bigram_bpc(train: np.ndarray, test: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (bits/char) on `test` of an add-one bigram model P(next | previous) of `train`.

    The first test character, which has no predecessor, is scored by the add-one unigram model.
    """
    squared = vocab_size * vocab_size
    pairs = sum(np.bincount(prev * vocab_size + nxt, minlength=squared) for prev, nxt in _pairs(train))
    counts = pairs.reshape(vocab_size, vocab_size).astype(np.float64) + 1.0
    log_p = np.log2(counts / counts.sum(axis=1, keepdims=True))  # (V prev, V next)
    bits = -sum(log_p[prev, nxt].sum() for prev, nxt in _pairs(test)) + unigram_bpc(
        train, test[:1], vocab_size
    )
    return float(bits / len(test))


# Each baseline by its name in reports, weakest first.
BASELINES: dict[str, Callable[[np.ndarray, np.ndarray, int], float]] = {
    "unigram": unigram_bpc,
    "bigram": bigram_bpc,
}
