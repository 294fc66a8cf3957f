"""The one-character step with the recurrence in int8, for the served decoder on the CPU. Each recurrent
matrix is quantised once per output channel (symmetric, 63 levels each side); the vector it multiplies is
quantised on every step per row (127 levels), so no row's range moves another row's result. The first
layer's input term is a table of one fp32 row per character (the embedding, or one-hot column, through its
weights and bias), looked up instead of multiplied. The feed-forward block, if any, and the head stay fp32:
the scores are what sampling reads."""

import torch
import torch.nn.functional as F

from charlm.model.network import CharLM, Hidden, hidden_from_tensors, hidden_tensors

LEVELS = 127  # a vector's symmetric int8 range
# A weight's range. Without VNNI, oneDNN multiplies int8 by int8 as unsigned by signed bytes, summing pairs
# of products in 16 bits: 2 x 255 x 63 fits, 2 x 255 x 127 saturates (wrong sums on AVX2-only CPUs).
WEIGHT_LEVELS = 63
TINY = 1e-12  # a row or channel of zeros keeps a finite scale


class Int8Linear:
    """x (B, K) -> x W^T (B, N), W quantised per output channel, x per row; the bias is added apart."""

    def __init__(self, weight: torch.Tensor) -> None:
        weight = weight.detach().float()
        scale = weight.abs().amax(1).clamp(min=TINY) / WEIGHT_LEVELS  # (N,)
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
            w_ih, _, b_ih, _ = net.rnn.all_weights[0]
            if net.embedding is not None:
                self.table = F.linear(net.embedding.weight.float(), w_ih.float(), b_ih.float())  # (V, G)
            else:  # a one-hot input picks its column of the weights
                self.table = (w_ih.float().t() + b_ih.float()).contiguous()  # (V, G)
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
        x = self.table.index_select(0, idx)  # (B, G): the first layer's input term
        for layer, (w_ih, b_ih, w_hh, b_hh) in enumerate(self.layers):
            x_part = x if w_ih is None else w_ih(x) + b_ih  # (B, G)
            h = states[0][layer]  # (B, H)
            h_part = w_hh(h) + b_hh  # (B, G)
            if self.cell == "lstm":  # torch's gate order: input, forget, cell, output
                i, f, g, o = (x_part + h_part).chunk(4, 1)
                c = torch.sigmoid(f) * states[1][layer] + torch.sigmoid(i) * torch.tanh(g)
                x = torch.sigmoid(o) * torch.tanh(c)
                out[1].append(c)
            elif self.cell == "gru":  # reset, update, new; the reset gate scales the state's term
                width = h.size(1)
                # Sigmoid over a view of the sum, not a tensor of its own: over a contiguous tensor its
                # vectorised loop rounds its last few values otherwise, and which row's those are
                # depends on the batch.
                r, z = torch.sigmoid((x_part + h_part)[:, : 2 * width]).chunk(2, 1)  # (B, H) each
                n = torch.tanh(x_part[:, 2 * width :] + r * h_part[:, 2 * width :])
                x = n + z * (h - n)  # (1 - z) n + z h, each operation rounded alike in any batch
            else:
                x = torch.tanh(x_part + h_part)
            out[0].append(x)
        return self.net.head.scores(self.net.readout(x)), hidden_from_tensors(
            [torch.stack(layers) for layers in out]
        )
