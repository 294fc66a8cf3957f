"""A split laid out as B parallel streams, read in chunks of T: how training and evaluation see text.

Row b of the (B, L) layout continues where row b-1 ends, so carrying each row's hidden state from
one chunk to the next is stateful truncated BPTT. Only the last `len % B` characters, which do not
fill a stream, are left out.
"""

import numpy as np
import torch

from charlm.errors import DataError


def streams(ids: np.ndarray, batch_size: int, device: torch.device) -> torch.Tensor:
    """Lay `ids` out as (B, L) contiguous streams."""
    length = len(ids) // batch_size
    if length < 2:
        raise DataError(f"{len(ids)} characters are too few for {batch_size} streams of at least 2")
    data = torch.from_numpy(ids[: batch_size * length].astype(np.int64))
    return data.view(batch_size, length).to(device)  # (B, L)


class Batches:
    """Training chunks: step s reads the chunk at offset `(s mod steps_per_epoch) * T` of every
    stream, so the data position is a pure function of the step (and resuming needs no cursor).

    `rows` picks this process's share of the streams (all of them outside data-parallel runs).
    """

    def __init__(
        self, ids: np.ndarray, batch_size: int, seq_len: int, device: torch.device, rows: slice = slice(None)
    ):
        self.data = streams(ids, batch_size, device)[rows]  # (B / world size, L)
        self.seq_len = seq_len
        self.steps_per_epoch = (self.data.size(1) - 1) // seq_len
        if self.steps_per_epoch < 1:
            raise DataError(
                f"the training split ({len(ids)} chars) is too short for train.batch_size={batch_size}"
                f" streams of train.seq_len + 1 = {seq_len + 1} characters"
            )

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(inputs (B, T), targets (B, T), whether this chunk starts a new epoch)."""
        chunk = step % self.steps_per_epoch
        start = chunk * self.seq_len
        x = self.data[:, start : start + self.seq_len]
        y = self.data[:, start + 1 : start + self.seq_len + 1]
        return x, y, chunk == 0
