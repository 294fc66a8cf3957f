"""The one-character step with the recurrence in int8, for the served decoder on the CPU. Each recurrent
matrix is quantised once per output channel (symmetric, 127 levels); the vector it multiplies is quantised
on every step per row, so a row's result never depends on the rows beside it. The first layer's input term
is a table of one fp32 row per character (the embedding, or one-hot column, through its weights and bias),
looked up instead of multiplied. The head stays fp32: its scores are what sampling reads."""

import torch
import torch.nn.functional as F

from charlm.model.network import CharLM, Hidden, hidden_from_tensors, hidden_tensors

LEVELS = 127  # int8's symmetric range
TINY = 1e-12  # a row or channel of zeros keeps a finite scale


class Int8Linear:
    """x (B, K) -> x W^T (B, N), W quantised per output channel, x per row; the bias is added apart."""

    def __init__(self, weight: torch.Tensor) -> None:
        weight = weight.detach().float()
        scale = weight.abs().amax(1).clamp(min=TINY) / LEVELS  # (N,)
        # Kept (N, K) and read transposed: a one-row product then takes a much faster kernel.
        self.weight = torch.round(weight / scale[:, None]).to(torch.int8)  # (N, K)
        self.scale = scale

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        scale = (
            torch.linalg.vector_norm(x, float("inf"), dim=1, keepdim=True).clamp_(min=TINY) / LEVELS
        )  # (B, 1)
        xq = torch.round(x / scale).to(torch.int8)
        return torch._int_mm(xq, self.weight.t()) * (scale * self.scale)  # int32 sums, exact; (B, N)


class Int8Step:
    """`CharLM.step` with the recurrent matrices in int8 (this module's docstring); CPU only."""

    def __init__(self, net: CharLM) -> None:
        if net.head.weight.device.type != "cpu":
            raise ValueError(f"an int8 step runs on the CPU, not on {net.head.weight.device}")
        self.net, self.cell = net, net.config.cell
        with torch.no_grad():
            inputs = net.embedding.weight if net.embedding is not None else torch.eye(net.vocab_size)
            w_ih, _, b_ih, _ = net.rnn.all_weights[0]
            self.table = F.linear(inputs.float(), w_ih.float(), b_ih.float())  # (V, G)
        # Per layer: its input's matrix and bias (none in the first: the table), the state's matrix and bias.
        self.layers = [
            (
                Int8Linear(w_ih) if layer else None,
                b_ih.detach().float(),
                Int8Linear(w_hh),
                b_hh.detach().float(),
            )
            for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(net.rnn.all_weights)
        ]

    @torch.inference_mode()
    def __call__(self, idx: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
        """idx (B,) -> scores (B, V) and the next hidden state, as `CharLM.step` gives them."""
        states = hidden_tensors(hidden)  # each (num_layers, B, H)
        out: list[list[torch.Tensor]] = [[] for _ in states]
        x_part = self.table.index_select(0, idx)  # (B, G)
        x = x_part
        for layer, (w_ih, b_ih, w_hh, b_hh) in enumerate(self.layers):
            if w_ih is not None:
                x_part = w_ih(x) + b_ih
            h = states[0][layer]  # (B, H)
            h_part = w_hh(h) + b_hh  # (B, G)
            if self.cell == "lstm":  # torch's gate order: input, forget, cell, output
                i, f, g, o = (x_part + h_part).chunk(4, 1)
                c = torch.sigmoid(f) * states[1][layer] + torch.sigmoid(i) * torch.tanh(g)
                x = torch.sigmoid(o) * torch.tanh(c)
                out[1].append(c)
            elif self.cell == "gru":  # reset, update, new; the reset gate scales the state's term
                (xr, xz, xn), (hr, hz, hn) = x_part.chunk(3, 1), h_part.chunk(3, 1)
                r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                x = torch.lerp(torch.tanh(xn + r * hn), h, z)  # (1 - z) n + z h
            else:
                x = torch.tanh(x_part + h_part)
            out[0].append(x)
        return self.net.head.scores(x), hidden_from_tensors([torch.stack(layers) for layers in out])
