"""FeedForward: the block after the recurrence widens, folds back by summing slices, and adds."""

import torch
import torch.nn.functional as F

from charlm.model.feedforward import FeedForward


def test_it_adds_the_folded_wide_layer_to_its_input() -> None:
    torch.manual_seed(0)
    block = FeedForward(6, 3, dropout=0.5).eval()
    x = torch.randn(2, 5, 6)  # (B, T, H)
    wide = F.gelu(block.widen(F.layer_norm(x, (6,), block.norm.weight, block.norm.bias)))  # (B, T, 18)
    expected = x + wide[..., :6] + wide[..., 6:12] + wide[..., 12:]
    torch.testing.assert_close(block(x), expected)
    torch.testing.assert_close(block(x[:, 2]), expected[:, 2])  # one position, as the decoder's step


def test_dropout_acts_in_training_only() -> None:
    torch.manual_seed(0)
    block = FeedForward(8, 2, dropout=0.5)
    x = torch.randn(4, 8)
    assert not torch.equal(block(x), block(x))
    block.eval()
    assert torch.equal(block(x), block(x))
    torch.nn.init.zeros_(block.widen.weight)
    torch.nn.init.zeros_(block.widen.bias)
    assert torch.equal(block(x), x)  # GELU(0) = 0: a block that learned nothing passes its input
