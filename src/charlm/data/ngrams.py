"""How often each run of n characters occurs in a split, counted a block of ids at a time as the
split streams past: the vocab stage counts while it encodes, so the baselines of the data report
cost no pass of their own, and the writing judge counts the training split it reads."""

import warnings

import numpy as np
import torch

BLOCK = 1 << 20  # ids counted at a time: the temporaries stay small whatever the caller's chunk


class NgramCounts:
    """Counts of every run of 1 to `order` ids over a stream of ids; `table(n)` is (V,) * n.

    Only the longest runs are counted; a shorter run is the end of a longer one, or the stream's
    first, so its counts are sums of the longer ones' (one bincount per block, not `order`).
    """

    def __init__(self, vocab_size: int, order: int) -> None:
        self.vocab_size, self.order = vocab_size, order
        self.counts = torch.zeros(vocab_size**order, dtype=torch.int64)  # of the runs of `order` ids
        # a run's code: its ids as the digits of a number in base V, in 32 bits while it fits
        code_type = torch.int32 if vocab_size**order < 2**31 else torch.int64
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
        """Count the stream's next ids."""
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
        self.counts += torch.bincount(codes, minlength=len(self.counts))

    def table(self, n: int) -> np.ndarray:
        """How often each n ids occur in a row, (V,) * n."""
        if self.total < self.order:  # no run is that long: the whole stream is the head
            table = np.zeros((self.vocab_size,) * n, dtype=np.int64)
            for i in range(len(self.head) - n + 1):
                table[tuple(self.head[i : i + n])] += 1
            return table
        table = self.counts.numpy().reshape((self.vocab_size,) * self.order)
        for k in range(self.order - 1, n - 1, -1):
            table = table.sum(axis=0)  # the runs of k ids after the first one...
            table[tuple(self.head[:k])] += 1  # ...and the first
        return table


def _tensor(ids: np.ndarray) -> torch.Tensor:
    """A block of ids as a tensor, sharing its memory (torch warns that a mapped file is read-only;
    it is only read). Unsigned ids wider than a byte have no tensor type: they are widened."""
    array = np.asarray(ids)
    if array.dtype.kind == "u" and array.dtype.itemsize > 1:
        array = array.astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)
