"""The feed-forward block after the recurrence, SHA-RNN's "Boom" layer (Merity 2019): each position's
features are normalised, widened `factor` times through a GELU, folded back by summing the wide
vector's `factor` slices (no second matrix), and added to what they were. It reads every position at
once, so the recurrence keeps its fused kernel, and one position (the decoder's step) alike."""

import torch
import torch.nn.functional as F
from torch import nn


class FeedForward(nn.Module):
    def __init__(self, width: int, factor: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.widen = nn.Linear(width, width * factor)
        self.factor, self.dropout = factor, dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., H) -> (..., H)."""
        wide = F.gelu(self.widen(self.norm(x)))  # (..., factor * H)
        folded = wide.unflatten(-1, (self.factor, -1)).sum(-2)  # (..., H)
        return x + F.dropout(folded, self.dropout, self.training)
