"""The writing judge's reader: an interpolated (Witten-Bell) character n-gram model of the training
split, kept as the runs the split holds (`charlm.data.ngrams`), so its size follows the corpus and
not the vocabulary: its default order fits any vocabulary."""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from charlm.data import ngrams
from charlm.data.ngrams import NgramCounts, Runs
from charlm.errors import ParamsError
from charlm.progress import OnProgress, quiet


@dataclass(frozen=True)
class Contexts:
    """One order n >= 2 of the model: the runs of n characters of the training split, and by the
    code of each history h (the n - 1 characters before the last) c(h), how often a character
    followed it, and T(h), how many distinct ones did."""

    runs: Runs
    seen: Runs  # c(h)
    kinds: Runs  # T(h)

    @classmethod
    def of(cls, runs: Runs, vocab_size: int) -> "Contexts":
        history = runs.codes // vocab_size
        return cls(runs, Runs.grouped(history, runs.counts), Runs.grouped(history, np.ones_like(history)))


def check_order(vocab_size: int, order: int) -> None:
    """Refuse an order whose runs have no code over this vocabulary (as soon as it is known)."""
    if not ngrams.codes_fit(vocab_size, order):
        raise ParamsError(
            f"evaluate.writing.ngram_order: runs of {order} over {vocab_size:,} characters have no"
            f" 64-bit code ({vocab_size:,}^{order} >= 2^63); lower it"
        )


class NGram:
    """An interpolated character n-gram model over the runs the training split holds: -log2 P(w |
    the n - 1 characters before it), for every n up to its order, computed for the characters read."""

    def __init__(self, unigram: np.ndarray, contexts: list[Contexts]) -> None:
        self.unigram = unigram  # (V,) P(w), add-one
        self.contexts = contexts  # orders 2 and up
        self.order = len(contexts) + 1

    @classmethod
    def fit(cls, train: np.ndarray, vocab_size: int, order: int, on_progress: OnProgress = quiet) -> "NGram":
        """Witten-Bell: P(w | h) = (c(h w) + T(h) P(w | h')) / (c(h) + T(h)), where T(h) is the
        number of distinct characters seen after h and h' is h without its first character; an
        add-one unigram at the bottom. Progress in characters counted."""
        check_order(vocab_size, order)
        counted = NgramCounts(vocab_size, order)
        for start in range(0, len(train), ngrams.BLOCK):
            counted.add(train[start : start + ngrams.BLOCK])
            on_progress(counted.total, len(train))
        unigram = counted.unigram() + 1.0
        contexts = [Contexts.of(counted.runs(n), vocab_size) for n in range(2, order + 1)]
        return cls(unigram / unigram.sum(), contexts)

    def probabilities(self, ids: np.ndarray) -> np.ndarray:
        """P(w | h) of each character of `ids`, (len(ids),): after the order - 1 before it, or
        after all there are for the first ones."""
        size = len(self.unigram)
        p = self.unigram[ids]  # (N,)
        for n, ctx in enumerate(self.contexts, start=2):
            codes = ngrams.run_codes(ids, n, size)  # the runs that end at positions n - 1 on
            lower = p[n - 1 :]  # P(w | h'), by position
            seen, kinds = ctx.seen.count(codes // size).astype(np.float64), ctx.kinds.count(codes // size)
            with np.errstate(invalid="ignore", divide="ignore"):  # where c(h) = 0, P(w | h')
                higher = (ctx.runs.count(codes).astype(np.float64) + kinds * lower) / (seen + kinds)
            p = np.concatenate([p[: n - 1], np.where(seen > 0, higher, lower)])
        return p

    def read(
        self, ids: np.ndarray, window: int, start: int = 0, on_progress: OnProgress = quiet
    ) -> tuple[float, float]:
        """The mean bits per character of `ids[start:]` (the characters before `start` are only
        context), and its worst window: the highest mean over `window` consecutive characters, or
        over all of them when there are fewer. Progress in characters read."""
        total, count, worst = 0.0, 0, -np.inf
        tail = np.empty(0)  # the last window - 1 bits of the previous chunk
        for bits in self._bits(ids, start):
            total, count = total + float(bits.sum()), count + len(bits)
            run = np.concatenate([tail, bits])
            if len(run) >= window:
                sums = np.cumsum(np.concatenate([[0.0], run]))
                worst = max(worst, float((sums[window:] - sums[:-window]).max()) / window)
            tail = run[len(run) - window + 1 :] if window > 1 else np.empty(0)
            on_progress(count, len(ids) - start)
        mean = total / max(count, 1)
        return mean, worst if np.isfinite(worst) else mean

    def _bits(self, ids: np.ndarray, start: int) -> Iterator[np.ndarray]:
        """The bits of every character of `ids` from `start` on, a chunk at a time, each read after
        up to order - 1 characters before it."""
        for at in range(start, len(ids), ngrams.BLOCK):  # a split may be larger than memory
            before = min(at, self.order - 1)  # context only: read as the previous chunk's
            chunk = np.asarray(ids[at - before : at + ngrams.BLOCK], dtype=np.int64)
            yield -np.log2(self.probabilities(chunk)[before:])
