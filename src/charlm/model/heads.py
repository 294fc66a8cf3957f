"""The output layer: from the recurrence's features to the next character's log-probabilities. `SoftmaxHead`
is one linear layer over every character, whose cost per position grows with the vocabulary: most of a step at
thousands of symbols. `AdaptiveHead` (Grave et al. 2017, "Efficient softmax approximation for GPUs") ranks the
characters by training frequency: the most frequent (the shortlist) and one entry per tail cluster share a
softmax, and each cluster's characters have their own over a narrower projection of the features, computed
only where a target falls in it; its log-probabilities are exact, P(c) = P(cluster) P(c | cluster). Both
answer `scores` (log-probabilities up to a constant per position, for sampling), `loss` (the targets'
cross-entropy) and `graded` (summed nats and correct guesses)."""

import itertools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def clusters(cutoffs: Sequence[int], vocab_size: int) -> list[int]:
    """The boundaries by frequency rank the head uses over `vocab_size` characters: the cut-offs
    below it, then the vocabulary's end; one boundary is a full softmax."""
    return [c for c in cutoffs if c < vocab_size] + [vocab_size]


def describe(cutoffs: Sequence[int], vocab_size: int) -> str:
    """The output layer over `vocab_size` characters in words, as run descriptions and cards say it."""
    bounds = clusters(cutoffs, vocab_size)
    if len(bounds) == 1:
        return f"a softmax over {vocab_size:,} characters"
    sizes = " and ".join(f"{high - low:,}" for low, high in itertools.pairwise(bounds))
    return f"an adaptive softmax over {vocab_size:,} characters ({bounds[0]:,} most frequent, then clusters of {sizes})"


class SoftmaxHead(nn.Linear):
    """A full softmax: the logits of every character (its weights are `head.weight`, `head.bias`)."""

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(features, self.weight, self.bias)  # (..., V)

    def loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The targets' mean cross-entropy in nats: features (B, T, H), targets (B, T)."""
        logits = self(features).float()  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    def graded(self, features: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(features).float()  # (B, T, V)
        nats = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")
        return nats, (logits.argmax(-1) == targets).sum()

    @torch.no_grad()
    def start_at(self, counts: Sequence[int]) -> None:
        """Predict the unigram distribution of `counts` (add-one) whatever the features: from a bias
        near zero, the rows of rare characters grow long instead and win after states the corpus
        never led to (docs/experiments.md#what-the-models-write)."""
        self.bias.copy_(torch.from_numpy(_log_frequencies(counts)))


class AdaptiveHead(nn.Module):
    def __init__(self, hidden_size: int, vocab_size: int, cutoffs: Sequence[int], div: float) -> None:
        """`cutoffs`: frequency ranks where a cluster starts (those at or past the vocabulary's end
        are none); cluster i projects the features to hidden_size / div^(i + 1)."""
        super().__init__()
        self.bounds = clusters(cutoffs, vocab_size)  # [shortlist, ..., V]
        self.shortlist = self.bounds[0]
        self.head = nn.Linear(hidden_size, self.shortlist + len(self.bounds) - 1)
        widths = [max(1, round(hidden_size / div ** (i + 1))) for i in range(len(self.bounds) - 1)]
        self.tails = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden_size, width, bias=False), nn.Linear(width, high - low))
            for width, (low, high) in zip(widths, itertools.pairwise(self.bounds), strict=True)
        )
        # The characters by rank (most frequent first) and each character's rank; saved with the
        # weights, since the ranks come from the training split's counts (`start_at`).
        self.register_buffer("by_rank", torch.arange(vocab_size))
        self.register_buffer("rank", torch.arange(vocab_size))
        # Where each cluster's ranks start, for bucketing targets: derived, so not saved.
        self.register_buffer("starts", torch.tensor(self.bounds[:-1], dtype=torch.long), persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        """A weight of the layer: where its parameters live, and their dtype."""
        return self.head.weight

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """Every character's log-probability, (..., V) by id."""
        head = F.log_softmax(self.head(features).float(), -1)  # (..., S + clusters)
        parts = [head[..., : self.shortlist]]
        for i, tail in enumerate(self.tails):
            within = F.log_softmax(tail(features).float(), -1)  # (..., cluster size)
            parts.append(within + head[..., self.shortlist + i, None])
        return torch.cat(parts, -1).index_select(-1, self.rank)

    def _shared(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The features flattened, (N, H), and the head's log-probabilities, (N, S + clusters)."""
        features = features.flatten(0, -2)
        return features, F.log_softmax(self.head(features).float(), -1)

    def nats(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each target's cross-entropy, (N,)."""
        return self._nats(*self._shared(features), targets.flatten())

    def _nats(self, features: torch.Tensor, head: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The head's term for every position; a cluster's softmax only for the positions whose
        target is in it."""
        rank = self.rank[targets]  # (N,)
        cluster = torch.bucketize(rank, self.starts, right=True)  # 0: shortlist
        column = torch.where(cluster == 0, rank, self.shortlist + cluster - 1)
        nats = -head.gather(1, column[:, None]).squeeze(1)
        for i, tail in enumerate(self.tails):
            # Every tail runs, on no rows if no target is in it, so each parameter has a gradient
            # at every step (DDP waits for all of them).
            rows = (cluster == i + 1).nonzero().squeeze(1)
            within = F.log_softmax(tail(features[rows]).float(), -1)  # (n, cluster size)
            picked = within.gather(1, (rank[rows] - self.bounds[i])[:, None]).squeeze(1)
            nats = nats.index_add(0, rows, -picked)
        return nats

    def loss(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.nats(features, targets).mean()

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """The most likely character at each position, (N,)."""
        return self._best(*self._shared(features))

    def _best(self, features: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        """A cluster's characters are scored only where the cluster's own probability beats the
        best shortlisted character's: none of them can beat it elsewhere."""
        best, rank = head[:, : self.shortlist].max(-1)  # (N,) each
        for i, tail in enumerate(self.tails):
            rows = (head[:, self.shortlist + i] > best).nonzero().squeeze(1)
            within, at = F.log_softmax(tail(features[rows]).float(), -1).max(-1)
            score = within + head[rows, self.shortlist + i]
            wins = score > best[rows]
            best[rows[wins]], rank[rows[wins]] = score[wins], at[wins] + self.bounds[i]
        return self.by_rank[rank]

    def graded(self, features: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, head = self._shared(features)
        with torch.no_grad():  # guesses are counted, never learnt from (dynamic evaluation learns)
            hits = (self._best(features, head) == targets.flatten()).sum()
        return self._nats(features, head, targets.flatten()).sum(), hits

    @torch.no_grad()
    def start_at(self, counts: Sequence[int]) -> None:
        """Rank the characters by `counts` (ties by id) and predict their unigram distribution
        (add-one) whatever the features: each cluster's entry at its characters' share, each
        character at its share within its cluster."""
        by_rank = np.argsort(-np.asarray(counts, dtype=np.int64), kind="stable")
        self.by_rank.copy_(torch.from_numpy(by_rank))
        self.rank.copy_(torch.from_numpy(np.argsort(by_rank, kind="stable")))
        logs = _log_frequencies(counts)[by_rank]  # by rank
        shares = [np.logaddexp.reduce(logs[low:high]) for low, high in itertools.pairwise(self.bounds)]
        self.head.bias.copy_(torch.from_numpy(np.concatenate([logs[: self.shortlist], shares])))
        for tail, (low, high), share in zip(self.tails, itertools.pairwise(self.bounds), shares, strict=True):
            tail[1].bias.copy_(torch.from_numpy(logs[low:high] - share))


def _log_frequencies(counts: Sequence[int]) -> np.ndarray:
    """log P(character) of add-one-smoothed `counts`, (V,)."""
    frequencies = np.asarray(counts, dtype=np.float64) + 1.0
    return np.log(frequencies / frequencies.sum())
