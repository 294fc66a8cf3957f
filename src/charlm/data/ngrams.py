"""How often each run of n characters occurs in a split, counted a block of ids at a time as the split streams
past: the vocab stage counts while it encodes, so the baselines of the data report cost no pass of their own,
and the writing judge counts the training split it reads. Only the runs that occur are kept, as sorted codes
with their counts (`Runs`): a corpus of 9,000 symbols has 81 million possible pairs and a few hundred thousand
that occur. Memory follows the distinct runs, never V^n (KenLM's rule), and within a fixed budget small tables
are counted densely, which is faster and gives the same runs."""

import warnings
from dataclasses import dataclass

import numpy as np
import torch

BLOCK = 1 << 20  # ids counted at a time: the temporaries stay small whatever the caller's chunk
DENSE_ENTRIES = 1 << 22  # a table of every possible run up to this size (32 MiB) is counted densely
MAX_CODE = 2**63  # a run's code is an int64


def codes_fit(vocab_size: int, order: int) -> bool:
    """Whether every run of `order` ids over `vocab_size` symbols has an int64 code."""
    return vocab_size**order < MAX_CODE


@dataclass(frozen=True)
class Runs:
    """The runs of n ids that occur: their codes (the ids as the digits of a number in base V, the
    first the most significant), sorted and distinct, and how often each occurs."""

    codes: np.ndarray  # (K,) int64
    counts: np.ndarray  # (K,) int64

    @classmethod
    def grouped(cls, codes: np.ndarray, counts: np.ndarray) -> "Runs":
        """The runs of `codes` (any order, repeats allowed), each repeat's counts summed."""
        codes, counts = codes.astype(np.int64), counts.astype(np.int64)
        if not len(codes):
            return cls(codes, counts)
        order = np.argsort(codes, kind="stable")
        codes, counts = codes[order], counts[order]
        starts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
        return cls(codes[starts], np.add.reduceat(counts, starts))

    def count(self, codes: np.ndarray) -> np.ndarray:
        """How often each of `codes` occurs: 0 for a run that never does."""
        if not len(self.codes):
            return np.zeros(len(codes), dtype=np.int64)
        at = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        return np.where(self.codes[at] == codes, self.counts[at], 0)


def run_codes(ids: np.ndarray, n: int, vocab_size: int) -> np.ndarray:
    """The code of the run of n ids that ends at each position from n - 1 on, (len(ids) - n + 1,)."""
    ids = np.asarray(ids, dtype=np.int64)
    runs = len(ids) - n + 1
    codes = ids[:runs].copy() if runs > 0 else np.empty(0, dtype=np.int64)
    for k in range(1, n):
        codes = codes * vocab_size + ids[k : runs + k]
    return codes


class NgramCounts:
    """Counts of every run of 1 to `order` ids over a stream of ids (`runs(n)`). Only the longest runs are
    counted; a shorter run is the end of a longer one, or one of the stream's first, so its counts are sums of
    the longer ones' (one count per block, not `order`)."""

    def __init__(self, vocab_size: int, order: int) -> None:
        if not codes_fit(vocab_size, order):
            raise ValueError(f"runs of {order} over {vocab_size} symbols have no int64 code")
        self.vocab_size, self.order = vocab_size, order
        possible = vocab_size**order
        # A table of every possible run while it fits the budget, else the runs seen (`Runs`), the
        # blocks' runs waiting in `pending` until they outweigh the merged ones.
        self.dense = torch.zeros(possible, dtype=torch.int64) if possible <= DENSE_ENTRIES else None
        self.merged = Runs.grouped(np.empty(0), np.empty(0))
        self.pending: list[Runs] = []
        code_type = torch.int32 if possible < 2**31 else torch.int64  # 32 bits while they fit
        # Every block goes through these two, so counting allocates nothing as large as a block:
        # the memory of a thread that counts stays as it was after the first block.
        self.block, self.codes = torch.empty(BLOCK, dtype=code_type), torch.empty(BLOCK, dtype=code_type)
        self.head = np.empty(0, dtype=np.int64)  # the stream's first order - 1 ids
        self.tail = torch.empty(0, dtype=code_type)  # its last order - 1 ids, for runs across blocks
        self.total = 0

    @classmethod
    def of(cls, ids: np.ndarray, vocab_size: int, order: int) -> "NgramCounts":
        """The counts of a whole array (a memory-mapped split is read a block at a time)."""
        counts = cls(vocab_size, order)
        counts.add(ids)
        return counts

    def add(self, ids: np.ndarray) -> None:
        keep = self.order - 1
        for start in range(0, len(ids), BLOCK):
            block = self.block[: min(BLOCK, len(ids) - start)]  # (b,)
            block.copy_(_tensor(ids[start : start + BLOCK]))
            if len(self.head) < keep:
                self.head = np.concatenate([self.head, block[: keep - len(self.head)].numpy()])
            self._count(torch.cat([self.tail, block[:keep]]))  # the runs across the two blocks
            self._count(block)
            self.tail = torch.cat([self.tail, block[-keep:]])[-keep:] if keep else self.tail
            self.total += len(block)

    def _count(self, window: torch.Tensor) -> None:
        runs = len(window) - self.order + 1
        if runs <= 0:
            return
        codes = self.codes[:runs]
        codes.copy_(window[:runs])
        for k in range(1, self.order):
            codes.mul_(self.vocab_size).add_(window[k : runs + k])
        if self.dense is not None:
            self.dense += torch.bincount(codes, minlength=len(self.dense))
            return
        self.pending.append(Runs(*np.unique(codes.numpy().astype(np.int64), return_counts=True)))
        if sum(len(r.codes) for r in self.pending) >= len(self.merged.codes):  # amortised: N log N in all
            self._merge()

    def _merge(self) -> None:
        parts = [self.merged, *self.pending]
        codes, counts = np.concatenate([p.codes for p in parts]), np.concatenate([p.counts for p in parts])
        self.merged, self.pending = Runs.grouped(codes, counts), []

    def _longest(self) -> Runs:
        """The runs of `order` ids."""
        if self.dense is not None:
            table = self.dense.numpy()
            seen = np.flatnonzero(table)
            return Runs(seen.astype(np.int64), table[seen])
        self._merge()
        return self.merged

    def runs(self, n: int) -> Runs:
        """The runs of n ids (1 <= n <= order) that occur, and how often."""
        longest = self._longest() if self.total >= self.order else Runs.grouped(np.empty(0), np.empty(0))
        if n == self.order:
            return longest
        # A run of n ids is the end of the longest run that ends where it does, or one of the
        # stream's first, which end before any longest run does (the head holds them).
        first = run_codes(self.head, n, self.vocab_size)
        codes = np.concatenate([longest.codes % self.vocab_size**n, first])
        return Runs.grouped(codes, np.concatenate([longest.counts, np.ones(len(first), dtype=np.int64)]))

    def unigram(self) -> np.ndarray:
        """How often each id occurs, (V,)."""
        single = self.runs(1)
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        counts[single.codes] = single.counts
        return counts


def _tensor(ids: np.ndarray) -> torch.Tensor:
    """A block of ids as a tensor, sharing its memory (torch warns that a mapped file is read-only;
    it is only read). Unsigned ids wider than a byte have no tensor type: they are widened."""
    array = np.asarray(ids)
    if array.dtype.kind == "u" and array.dtype.itemsize > 1:
        array = array.astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)
