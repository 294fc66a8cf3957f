"""A split laid out as B parallel streams, read in chunks of T: how training and evaluation see text.
Row b continues where row b-1 ends, so carrying each row's hidden state across chunks is stateful
truncated BPTT; the layout is a view of the memory-mapped ids, each chunk copied out as needed."""

import numpy as np
import torch

from charlm.errors import DataError


class Streams:
    def __init__(self, ids: np.ndarray, batch_size: int, rows: slice = slice(None)) -> None:
        """`rows` picks this process's share of the streams (all of them outside data-parallel runs)."""
        self.length = len(ids) // batch_size
        if self.length < 2:
            raise DataError(f"{len(ids)} characters are too few for {batch_size} streams of at least 2")
        self.ids = ids[: batch_size * self.length].reshape(batch_size, self.length)[rows]  # (B, L), a view

    def chunk(self, start: int, stop: int, device: torch.device) -> torch.Tensor:
        """Positions start..stop of every stream, (B, stop - start), as int64 ids on `device`."""
        return torch.from_numpy(self.ids[:, start:stop].astype(np.int64)).to(device)


class Batches:
    """Training chunks: step s reads the chunk at offset `(s mod steps_per_epoch) * T` of every
    stream, so the data position is a pure function of the step (and resuming needs no cursor)."""

    def __init__(
        self, ids: np.ndarray, batch_size: int, seq_len: int, device: torch.device, rows: slice = slice(None)
    ):
        self.streams = Streams(ids, batch_size, rows)
        self.seq_len, self.device = seq_len, device
        self.steps_per_epoch = (self.streams.length - 1) // seq_len
        if self.steps_per_epoch < 1:
            raise DataError(
                f"the training split ({len(ids)} chars) is too short for train.batch_size={batch_size}"
                f" streams of train.seq_len + 1 = {seq_len + 1} characters"
            )

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(inputs (B, T), targets (B, T), whether this chunk starts a new epoch)."""
        chunk = step % self.steps_per_epoch
        start = chunk * self.seq_len
        window = self.streams.chunk(start, start + self.seq_len + 1, self.device)  # (B, T + 1)
        return window[:, :-1], window[:, 1:], chunk == 0
