"""int8: the quantised step follows the fp32 step closely for every cell, input and head, a row's
result does not depend on the rows beside it, and it refuses a net off the CPU."""

import os
import subprocess
import sys

import pytest
import torch

from charlm.model.int8 import Int8Linear, Int8Step
from charlm.model.network import CharLM, Hidden, hidden_tensors
from charlm.params.training import ArchConfig
from tests.helpers import config

VOCAB_SIZE = 23


def saturating(
    cell: str,
    input_kind: str,
    num_layers: int,
    cutoffs: list[int],
    hidden_size: int = 48,
    feedforward: int = 0,
) -> CharLM:
    """A seeded net whose weights are large enough to drive its states toward ±1, as trained ones do."""
    torch.manual_seed(0)
    arch = config(
        ArchConfig,
        cell=cell,
        input=input_kind,
        embedding_size=12,
        hidden_size=hidden_size,
        num_layers=num_layers,
        head_cutoffs=cutoffs,
        feedforward=feedforward,
    )
    net = CharLM(arch, VOCAB_SIZE).eval()
    with torch.no_grad():
        for weight in net.rnn.parameters():
            weight.mul_(4)
    return net


def run(step: object, net: CharLM, ids: torch.Tensor) -> tuple[list[torch.Tensor], list[Hidden]]:
    """Log-probabilities and the state after each column of ids (B, T), stepping from a zero state."""
    hidden, scores, states = net.initial_hidden(ids.size(0)), [], []
    with torch.inference_mode():
        for t in range(ids.size(1)):
            out, hidden = step(ids[:, t], hidden)  # type: ignore[operator]
            scores.append(out.log_softmax(-1))
            states.append(hidden)
    return scores, states


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize(
    ("input_kind", "num_layers", "cutoffs", "feedforward"),
    [("embedding", 2, [], 0), ("onehot", 1, [], 0), ("embedding", 1, [8, 16], 0), ("embedding", 1, [], 3)],
)
def test_the_int8_step_follows_the_fp32_step(
    cell: str, input_kind: str, num_layers: int, cutoffs: list[int], feedforward: int
) -> None:
    # Each int8 step starts from the fp32 step's state, so the figure is one step's error (a random
    # net this large is chaotic: free-running, any difference grows).
    net = saturating(cell, input_kind, num_layers, cutoffs, feedforward=feedforward)
    ids = torch.randint(0, VOCAB_SIZE, (6, 30))
    exact, states = run(net.step, net, ids)
    step = Int8Step(net)
    with torch.inference_mode():
        for t in range(1, ids.size(1)):
            scores, hidden = step(ids[:, t], states[t - 1])
            errors = [(scores.log_softmax(-1) - exact[t]).abs().max()]
            errors += [
                (a - b).abs().max()
                for a, b in zip(hidden_tensors(hidden), hidden_tensors(states[t]), strict=True)
            ]
            assert 0 < max(errors) < 0.1, t  # quantised (not the fp32 step again), and close


@pytest.mark.parametrize("feedforward", [0, 3])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_a_row_steps_alike_alone_or_beside_others(cell: str, feedforward: int) -> None:
    # Each row's vector is quantised with its own scale, and no elementwise result depends on where a
    # row sits: 40 units leave a vectorised loop's tail over a contiguous (B, H) tensor at a row's end.
    net = saturating(cell, "embedding", 2, [], hidden_size=40, feedforward=feedforward)
    step = Int8Step(net)
    ids = torch.randint(0, VOCAB_SIZE, (5, 20))
    together, together_states = run(step, net, ids)
    alone, alone_states = run(step, net, ids[2:3])
    for t, (joint, single) in enumerate(zip(together_states, alone_states, strict=True)):
        assert all(
            torch.equal(a[:, 2:3], b)
            for a, b in zip(hidden_tensors(joint), hidden_tensors(single), strict=True)
        )
        # the fp32 head's sums may be ordered by the batch's size, as in the fp32 step
        torch.testing.assert_close(together[t][2:3], alone[t], rtol=0, atol=1e-5)


def test_int8_linear_is_exact_on_values_on_its_grid() -> None:
    weight = torch.tensor([[63.0, -32.0, 0.0], [1.0, 2.0, -63.0]]) / 63
    x = torch.tensor([[127.0, 1.0, -127.0], [0.0, 0.0, 0.0]])  # a row of zeros keeps a finite scale
    torch.testing.assert_close(Int8Linear(weight)(x), x @ weight.T)


EXTREMES = """
import torch
from charlm.model.int8 import Int8Linear
weight = torch.full((64, 448), 1.0)
weight[::2] = -1.0  # every channel at its extreme, both signs
x = torch.full((4, 448), 1.0)
x[1] = -1.0
x[2, ::2] = -1.0
print(float((Int8Linear(weight)(x) - x @ weight.T).abs().max()))
"""


@pytest.mark.parametrize("isa", ["AVX2", "ALL"])
def test_int8_products_do_not_saturate_on_cpus_without_vnni(isa: str) -> None:
    # oneDNN is told to use no instruction set above AVX2 (as on an AVX2-only CPU); its int8 products
    # then sum pairs in 16 bits, where weights of 127 levels overflowed (sums off by thousands).
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa}
    out = subprocess.run(
        [sys.executable, "-c", EXTREMES], env=env, capture_output=True, text=True, check=True
    )
    assert float(out.stdout) < 1e-3, out.stdout


def test_an_int8_step_refuses_a_net_off_the_cpu() -> None:
    net = saturating("gru", "embedding", 1, [])
    with pytest.raises(ValueError, match="an int8 step runs on the CPU, not on meta"):
        Int8Step(net.to("meta"))
