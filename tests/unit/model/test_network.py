"""CharLM: shapes and hidden state for every cell, both input encodings, weight tying, the step
for every cell and option."""

import pytest
import torch

from charlm.model.network import CharLM, detach_hidden
from charlm.params.training import ArchConfig
from tests.helpers import config


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("input_kind", ["embedding", "onehot"])
def test_forward_shapes_and_hidden(cell: str, input_kind: str) -> None:
    model_config = config(
        ArchConfig, cell=cell, embedding_size=8, hidden_size=16, num_layers=2, input=input_kind
    )
    model = CharLM(model_config, 11)
    idx = torch.randint(0, 11, (3, 5))
    logits, hidden = model(idx)
    assert logits.shape == (3, 5, 11)
    states = hidden if isinstance(hidden, tuple) else (hidden,)
    assert len(states) == (2 if cell == "lstm" else 1)
    assert all(s.shape == (2, 3, 16) for s in states)

    # Carrying the state across two chunks equals one pass over the concatenation.
    model.eval()
    full, _ = model(idx)
    first, h = model(idx[:, :2])
    second, _ = model(idx[:, 2:], detach_hidden(h))
    torch.testing.assert_close(torch.cat([first, second], 1), full)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize(
    ("input_kind", "num_layers", "cutoffs", "feedforward"),
    [("embedding", 2, [], 0), ("onehot", 1, [], 0), ("embedding", 1, [4, 8], 0), ("embedding", 2, [], 3)],
)
def test_step_equals_forward_one_character_at_a_time(
    cell: str, input_kind: str, num_layers: int, cutoffs: list[int], feedforward: int
) -> None:
    model_config = config(
        ArchConfig,
        cell=cell,
        embedding_size=8,
        hidden_size=16,
        num_layers=num_layers,
        input=input_kind,
        head_cutoffs=cutoffs,
        feedforward=feedforward,
    )
    model = CharLM(model_config, 11).eval()
    idx = torch.randint(0, 11, (3, 6))
    with torch.no_grad():
        full, full_hidden = model(idx)
        logits, hidden = model(idx[:, :1])
        steps = [logits[:, 0]]
        for t in range(1, 6):
            logits, hidden = model.step(idx[:, t], hidden)  # (B, V)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), full)
    torch.testing.assert_close(hidden, full_hidden)


def test_tied_weights_share_one_tensor() -> None:
    model = CharLM(
        config(ArchConfig, embedding_size=16, hidden_size=16, tie_weights=True, head_cutoffs=[]), 7
    )
    assert model.head.weight is model.embedding.weight  # type: ignore[union-attr]
    untied = CharLM(config(ArchConfig, embedding_size=16, hidden_size=16), 7)
    assert model.num_parameters() == untied.num_parameters() - 7 * 16


def test_locked_dropout_masks_a_channel_for_the_whole_sequence() -> None:
    model = CharLM(config(ArchConfig, cell="lstm", embedding_size=8, hidden_size=16, dropout=0.5), 11)
    x = torch.ones(4, 7, 16)  # (B, T, C)
    dropped = model._locked(x)
    assert set(dropped.unique().tolist()) == {0.0, 2.0}  # kept channels scaled by 1 / (1 - p)
    assert (dropped == dropped[:, :1]).all()  # one mask per sequence, the same at every step
    assert torch.equal(model.eval()._locked(x), x)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_weight_drop_drops_recurrent_weights_in_training_only(cell: str) -> None:
    torch.manual_seed(0)
    model = CharLM(config(ArchConfig, cell=cell, embedding_size=8, hidden_size=16, weight_drop=0.5), 11)
    plain = CharLM(config(ArchConfig, cell=cell, embedding_size=8, hidden_size=16), 11)
    plain.load_state_dict(model.state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    idx = torch.randint(0, 11, (3, 5))
    first, second = model(idx)[0], model(idx)[0]
    assert not torch.allclose(first, second)  # a fresh mask per forward
    first.sum().backward()
    assert model.rnn.weight_hh_l0.grad is not None and model.rnn.weight_hh_l0.grad.abs().sum() > 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # weights kept
    torch.testing.assert_close(model.eval()(idx)[0], plain.eval()(idx)[0])
