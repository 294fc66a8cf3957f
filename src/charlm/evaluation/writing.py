"""What a model writes, judged: each generated text read by an interpolated (Witten-Bell) character
n-gram model of the training split, and failed when its most surprising window reads more than
`margin_bits` above the validation split's worst window.
"""

from collections.abc import Iterator

import numpy as np

from charlm.data import ngrams
from charlm.data.ngrams import NgramCounts
from charlm.data.vocab import Vocabulary
from charlm.errors import ParamsError
from charlm.evaluation.report import WritingReport
from charlm.params.generation import SamplingOptions, WritingConfig

MAX_TABLE = 1 << 24  # entries of the n-gram table, vocabulary size ** order: 128 MiB of float64


class NGram:
    """An interpolated character n-gram model: `bits[n][h..., w]` is -log2 P(w | the n-1
    characters h before it), for every n up to its order."""

    def __init__(self, bits: list[np.ndarray]) -> None:
        self.bits = bits  # bits[0] is (V,), bits[n - 1] is (V,) * n
        self.order = len(bits)

    @classmethod
    def fit(cls, train: np.ndarray, vocab_size: int, order: int) -> "NGram":
        """Witten-Bell: P(w | h) = (c(h w) + T(h) P(w | h')) / (c(h) + T(h)), where T(h) is the
        number of distinct characters seen after h and h' is h without its first character; an
        add-one unigram at the bottom."""
        if vocab_size**order > MAX_TABLE:
            raise ParamsError(
                f"evaluate.writing.ngram_order: {order} over {vocab_size} characters needs"
                f" {vocab_size**order:,} table entries, more than {MAX_TABLE:,}; lower it"
            )
        counted = NgramCounts.of(train, vocab_size, order)
        unigram = counted.table(1) + 1.0
        probs = [unigram / unigram.sum()]
        for n in range(2, order + 1):
            counts = counted.table(n).astype(np.float64)  # (V,) * n
            seen = counts.sum(-1, keepdims=True)  # c(h)
            kinds = np.count_nonzero(counts, axis=-1)[..., None]  # T(h)
            lower = np.broadcast_to(probs[-1][None], counts.shape)  # P(w | h'), by h and w
            with np.errstate(invalid="ignore", divide="ignore"):
                p = (counts + kinds * lower) / (seen + kinds)
            probs.append(np.where(seen > 0, p, lower))
        return cls([-np.log2(p) for p in probs])

    def read(self, ids: np.ndarray, window: int, start: int = 0) -> tuple[float, float]:
        """The mean bits per character of `ids[start:]` (the characters before `start` are only
        context), and its worst window: the highest mean over `window` consecutive characters, or
        over all of them when there are fewer."""
        total, count, worst = 0.0, 0, -np.inf
        tail = np.empty(0)  # the last window - 1 bits of the previous chunk
        for bits in self._bits(ids, start):
            total, count = total + float(bits.sum()), count + len(bits)
            run = np.concatenate([tail, bits])
            if len(run) >= window:
                sums = np.cumsum(np.concatenate([[0.0], run]))
                worst = max(worst, float((sums[window:] - sums[:-window]).max()) / window)
            tail = run[len(run) - window + 1 :] if window > 1 else np.empty(0)
        mean = total / max(count, 1)
        return mean, worst if np.isfinite(worst) else mean

    def _bits(self, ids: np.ndarray, start: int) -> Iterator[np.ndarray]:
        """The bits of every character of `ids` from `start` on, a chunk at a time, each read after
        up to order - 1 characters before it."""
        n = self.order
        for at in range(start, len(ids), ngrams.BLOCK):  # a split may be larger than memory
            before = min(at, n - 1)
            chunk = np.asarray(ids[at - before : at + ngrams.BLOCK], dtype=np.int64)
            # Only the first characters of `ids` have fewer than n - 1 before them.
            first = [self.bits[i][tuple(chunk[: i + 1])] for i in range(before, min(n - 1, len(chunk)))]
            rest = self.bits[n - 1][tuple(chunk[k : len(chunk) - n + 1 + k] for k in range(n))]
            yield np.concatenate([first, rest])


def drawn(options: SamplingOptions) -> str:
    """How a text was drawn, as its report names it."""
    return "greedy" if options.top_k == 1 else f"seed {options.seed}, temperature {options.temperature:g}"


def transcript(wanted: list[tuple[str, SamplingOptions]], texts: list[str]) -> str:
    """The judged texts for people to read: each after a line naming its prompt and its drawing."""
    return "".join(
        f"=== after {prompt!r} ({drawn(options)})\n{prompt}{text}\n\n"
        for (prompt, options), text in zip(wanted, texts, strict=True)
    )


def judge(
    train: np.ndarray,
    val: np.ndarray,
    vocab: Vocabulary,
    cfg: WritingConfig,
    wanted: list[tuple[str, SamplingOptions]],
    texts: list[str],
) -> WritingReport:
    """Read each text generated after its (prompt, options) with the n-gram model of `train`,
    against the worst window of `val` and the margin."""
    ngram = NGram.fit(train, len(vocab), cfg.ngram_order)
    val_mean, val_worst = ngram.read(val, cfg.window)
    limit = val_worst + cfg.margin_bits
    means, worst, failures = [], -np.inf, []
    for (prompt, options), text in zip(wanted, texts, strict=True):
        head = vocab.encode(vocab.normalize(prompt))
        mean, text_worst = ngram.read(np.concatenate([head, vocab.encode(text)]), cfg.window, len(head))
        means.append(mean)
        worst = max(worst, text_worst)
        if text_worst > limit:
            failures.append(f"after {prompt!r} ({drawn(options)}): {text[:40]!r}")
    return WritingReport(
        texts=len(texts),
        failed=len(failures),
        worst_window_bits=round(worst, 4),
        val_worst_window_bits=round(val_worst, 4),
        limit_bits=round(limit, 4),
        mean_bits=round(float(np.mean(means)), 4),
        val_mean_bits=round(val_mean, 4),
        first_failure=failures[0] if failures else None,
    )
