"""heads: the adaptive softmax gives exact log-probabilities, the loss and the best guess of its
full distribution, computes a cluster only where a target falls in it, starts at the unigram; the
full softmax's loss is the one training always took."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from charlm.model.device import autocast, autocast_dtype
from charlm.model.heads import AdaptiveHead, SoftmaxHead, clusters, describe
from charlm.model.network import CharLM
from charlm.params.training import ArchConfig
from tests.helpers import config

V, H = 40, 24
COUNTS = np.random.default_rng(0).zipf(1.5, size=V)  # frequencies in no order of the ids


def adaptive(cutoffs: tuple[int, ...] = (6, 20)) -> AdaptiveHead:
    torch.manual_seed(0)
    head = AdaptiveHead(H, V, cutoffs, div=2.0)
    head.start_at(COUNTS.tolist())
    with torch.no_grad():  # weights that say something: the unigram bias alone ranks every row alike
        for p in head.parameters():
            p.add_(torch.randn_like(p))
    return head


def test_clusters_are_the_cutoffs_inside_the_vocabulary() -> None:
    assert clusters([1024, 4096], 85) == [85]  # one full softmax
    assert clusters([1024, 4096], 9202) == [1024, 4096, 9202]
    assert describe([1024, 4096], 85) == "a softmax over 85 characters"
    assert describe([1024, 4096], 9202) == (
        "an adaptive softmax over 9,202 characters (1,024 most frequent, then clusters of 3,072 and 5,106)"
    )


def test_scores_are_every_character_s_log_probability_by_id() -> None:
    head, features = adaptive(), torch.randn(3, 7, H)
    scores = head.scores(features)  # (3, 7, V)
    assert scores.shape == (3, 7, V)
    torch.testing.assert_close(scores.logsumexp(-1), torch.zeros(3, 7), atol=1e-5, rtol=0)
    targets = torch.randint(0, V, (3, 7))
    expected = -scores.gather(-1, targets[..., None]).squeeze(-1)
    torch.testing.assert_close(head.nats(features, targets), expected.flatten(), atol=1e-5, rtol=1e-5)
    assert head.loss(features, targets).item() == pytest.approx(expected.mean().item(), rel=1e-5)
    nats, hits = head.graded(features, targets)
    assert nats.item() == pytest.approx(expected.sum().item(), rel=1e-5)
    assert hits.item() == (scores.argmax(-1) == targets).sum().item()


def test_the_best_guess_is_the_full_distribution_s() -> None:
    head = adaptive()
    with torch.no_grad():  # clusters likely enough to hold the best guess of some positions
        head.head.bias[head.shortlist :] += 3.0
    features = torch.randn(500, H)
    assert torch.equal(head.predict(features), head.scores(features).argmax(-1))


def test_a_cluster_is_computed_only_where_a_target_falls_in_it_and_every_weight_learns() -> None:
    head, seen = adaptive(), []
    for tail in head.tails:
        tail.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].shape[0]))
    frequent = head.by_rank[: head.shortlist]
    targets = frequent[torch.randint(0, head.shortlist, (4, 9))]  # none in a cluster
    head.loss(torch.randn(4, 9, H), targets).backward()
    assert seen == [0, 0]  # each tail ran, on no row
    assert all(p.grad is not None for p in head.parameters())  # as DDP needs of every step
    seen.clear()
    targets[0, 0] = head.by_rank[-1]  # the rarest character: the last cluster's
    head.loss(torch.randn(4, 9, H), targets)
    assert seen == [0, 1]


def test_both_heads_start_at_the_unigram_distribution() -> None:
    unigram = torch.from_numpy(np.log((COUNTS + 1.0) / (COUNTS + 1.0).sum())).float()
    for head in (AdaptiveHead(H, V, (6, 20), div=2.0), SoftmaxHead(H, V)):
        head.start_at(COUNTS.tolist())
        with torch.no_grad():
            for name, p in head.named_parameters():
                if name.endswith("weight"):
                    p.zero_()  # the bias alone speaks
            scores = head.scores(torch.randn(2, H))
        torch.testing.assert_close(scores.log_softmax(-1), unigram.expand(2, V), atol=1e-5, rtol=0)
    ranks = AdaptiveHead(H, V, (6, 20), div=2.0)
    ranks.start_at(COUNTS.tolist())
    assert (np.diff(COUNTS[ranks.by_rank.numpy()]) <= 0).all()  # most frequent first
    assert torch.equal(ranks.by_rank[ranks.rank], torch.arange(V))


def test_the_full_softmax_loss_is_the_one_training_took_before_heads() -> None:
    """In training's autocast (bf16 where native), to the last bit: the model's figures stay."""
    torch.manual_seed(0)
    model = CharLM(config(ArchConfig, cell="lstm", embedding_size=16, hidden_size=32, num_layers=1), V)
    x, y = torch.randint(0, V, (4, 12)), torch.randint(0, V, (4, 12))
    dtype, cpu = autocast_dtype("auto", torch.device("cpu")), torch.device("cpu")
    with autocast(cpu, dtype):
        loss, _ = model(x, None, y)
        logits, _ = model(x, None)
    assert torch.equal(loss, F.cross_entropy(logits.float().flatten(0, 1), y.flatten()))
    with autocast(cpu, dtype):
        nats, hits = model.head.graded(model.features(x)[0], y)
    assert torch.equal(nats, F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum"))
    assert hits == (logits.float().argmax(-1) == y).sum()
