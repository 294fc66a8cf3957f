"""evaluate: a model with known output probabilities gives hand-computable loss and accuracy."""

import math

import numpy as np
import pytest
import torch

from charlm.evaluation.evaluate import evaluate
from charlm.model.network import CharLM
from charlm.params.model import ModelConfig
from tests.helpers import config


def constant_model(probs: list[float]) -> CharLM:
    """A model whose next-character distribution is `probs` whatever the input."""
    model = CharLM(config(ModelConfig, cell="rnn", embedding_size=4, hidden_size=4, num_layers=1), len(probs))
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
    result = evaluate(model, ids, batch_size=4, seq_len=7, device=torch.device("cpu"))
    assert result.chars == 4 * 24
    assert result.loss_nats == pytest.approx(-math.log(0.25))
