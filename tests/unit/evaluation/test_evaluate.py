"""evaluate: a model with known output probabilities gives hand-computable loss and accuracy."""

import math

import numpy as np
import pytest
import torch

from charlm.evaluation.evaluate import evaluate, windowed
from charlm.model.network import CharLM
from charlm.params.training import ArchConfig
from tests.helpers import config


def constant_model(probs: list[float]) -> CharLM:
    """A model whose next-character distribution is `probs` whatever the input."""
    model = CharLM(config(ArchConfig, cell="rnn", embedding_size=4, hidden_size=4, num_layers=1), len(probs))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor(probs).log())
    return model


def test_loss_bpc_accuracy_by_hand() -> None:
    probs = [0.1, 0.6, 0.3]
    model = constant_model(probs)
    ids = np.array([1, 2, 1, 1, 2, 2, 1, 2, 1], dtype=np.uint8)
    # 1 stream of 9: targets are ids[1:] = [2, 1, 1, 2, 2, 1, 2, 1]
    result = evaluate(model, ids, batch_size=1, seq_len=3, device=torch.device("cpu"))
    expected = -(4 * math.log(0.6) + 4 * math.log(0.3)) / 8
    assert result.chars == 8
    assert result.loss_nats == pytest.approx(expected)
    assert result.bpc == pytest.approx(expected / math.log(2))
    assert result.perplexity == pytest.approx(math.exp(expected))
    assert result.accuracy == pytest.approx(0.5)  # argmax is id 1, right on half the targets


def test_streams_cover_every_target() -> None:
    model = constant_model([0.5, 0.25, 0.25])
    ids = np.array([1, 2] * 50 + [0, 0, 0], dtype=np.uint8)  # 103 = 4 streams of 25, 3 left over
    reports: list[tuple[int, int]] = []
    result = evaluate(model, ids, 4, 7, torch.device("cpu"), on_progress=lambda *r: reports.append(r))
    assert result.chars == 4 * 24
    assert reports == [(min(4 * 7 * k, 96), 96) for k in range(1, 5)]  # characters scored, as it goes
    assert result.loss_nats == pytest.approx(-math.log(0.25))


def test_windows_start_cold_and_are_the_same_for_one_seed() -> None:
    torch.manual_seed(0)
    model = CharLM(config(ArchConfig, cell="lstm", embedding_size=4, hidden_size=8, num_layers=1), 5)
    ids = np.random.default_rng(1).integers(0, 5, size=300).astype(np.uint8)
    cpu = torch.device("cpu")
    result = windowed(model, ids, windows=70, length=16, seed=3, device=cpu)
    assert result.chars == 70 * 16
    assert windowed(model, ids, 70, 16, 3, cpu) == result
    assert windowed(model, ids, 70, 16, 4, cpu) != result
    # By hand: each window from a zero state, every target counted.
    starts = np.random.default_rng(3).integers(0, 300 - 16, size=70)
    nats = []
    for s in starts:
        window = torch.from_numpy(ids[s : s + 17].astype(np.int64))[None]
        logits, _ = model(window[:, :-1], None)
        nats.append(torch.nn.functional.cross_entropy(logits[0], window[0, 1:], reduction="sum").item())
    assert result.loss_nats == pytest.approx(sum(nats) / (70 * 16), rel=1e-5)


def test_a_split_shorter_than_a_window_is_refused() -> None:
    with pytest.raises(ValueError, match="no window of 16"):
        windowed(constant_model([0.5, 0.5]), np.zeros(10, dtype=np.uint8), 2, 16, 0, torch.device("cpu"))
