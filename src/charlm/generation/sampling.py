"""Drawing the next character: batched temperature, top-k and top-p (nucleus) sampling, each row with its own
settings and random numbers. A row's uniform draws come from its own generator in blocks that depend on its
seed alone, so a seeded row gives the same text whatever it is batched with. `<unk>` is never sampled."""

import torch

from charlm.data.vocab import UNK_ID


class Draws:
    """A row's random numbers in [0, 1), from its own generator, drawn a block at a time."""

    BLOCK = 256

    def __init__(self, seed: int | None) -> None:
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self.block: list[float] = []
        self.used = 0

    def next(self) -> float:
        if self.used == len(self.block):
            self.block, self.used = torch.rand(self.BLOCK, generator=self.generator).tolist(), 0
        self.used += 1
        return self.block[self.used - 1]


def sample_next(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor | None,
    top_p: torch.Tensor | None,
    u: torch.Tensor,
) -> torch.Tensor:
    """One character id per row by inverse-CDF sampling of the filtered distribution: logits (B, V);
    temperature, top_k, top_p (B, 1) per row (None: no row filters that way; a row's top_k = V or top_p > 1
    leaves it unfiltered); u (B,) uniform draws. The top-p nucleus is taken over the top-k survivors."""
    logits = logits.float() / temperature
    logits[:, UNK_ID] = float("-inf")
    ranked, order = logits.sort(dim=-1, descending=True)  # (B, V)
    if top_k is not None:
        ranks = torch.arange(ranked.size(1), device=ranked.device)  # (V,)
        ranked = ranked.masked_fill(ranks >= top_k, float("-inf"))
    probs = torch.softmax(ranked, -1)
    if top_p is not None:
        # Drop a character when the ones ranked before it already reach top_p (the first stays).
        probs = probs.masked_fill(probs.cumsum(-1) - probs >= top_p, 0.0)
    cdf = probs.cumsum(-1)  # (B, V)
    pick = torch.searchsorted(cdf, (u.to(cdf) * cdf[:, -1]).unsqueeze(1))  # (B, 1)
    return order.gather(1, pick.clamp_(max=ranked.size(1) - 1)).squeeze(1)  # (B,)
