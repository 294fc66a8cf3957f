"""CharLM: one character-level language model class for every recurrent cell (`nn.RNN`, `nn.LSTM`,
`nn.GRU`), with the input encoding, locked dropout, DropConnect and output head (`charlm.model.heads`:
a full softmax, or an adaptive one over a large vocabulary) and the optional feed-forward block between
them shared, so training, evaluation and
sampling use one code path for every cell and head."""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from charlm.model.feedforward import FeedForward
from charlm.model.heads import AdaptiveHead, SoftmaxHead, clusters
from charlm.params.training import ArchConfig

# nn.LSTM carries (h, c); nn.RNN and nn.GRU carry h alone. Each tensor is (num_layers, B, H).
Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
# One character for each of B rows: idx (B,) and the state -> scores (B, V) and the next state (`CharLM.step`).
Step = Callable[[torch.Tensor, Hidden], tuple[torch.Tensor, Hidden]]

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
# One step of each cell on the same weights, outside the module: `nn.LSTM` on the CPU goes through
# oneDNN's RNN primitive, whose fixed cost per call dominates a one-character step.
CELL_STEPS = {"rnn": torch.rnn_tanh_cell, "lstm": torch.lstm_cell, "gru": torch.gru_cell}


class CharLM(nn.Module):
    def __init__(self, config: ArchConfig, vocab_size: int) -> None:
        super().__init__()
        self.config, self.vocab_size = config, vocab_size
        if config.input == "embedding":
            self.embedding: nn.Embedding | None = nn.Embedding(vocab_size, config.embedding_size)
            input_size = config.embedding_size
        else:  # one-hot, as the seed examples did: no learned input table
            self.embedding = None
            input_size = vocab_size
        self.rnn = CELLS[config.cell](
            input_size,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.feedforward = (
            FeedForward(config.hidden_size, config.feedforward, config.dropout)
            if config.feedforward
            else None
        )
        self.head: SoftmaxHead | AdaptiveHead
        if len(clusters(config.head_cutoffs, vocab_size)) == 1:
            self.head = SoftmaxHead(config.hidden_size, vocab_size)
        else:
            self.head = AdaptiveHead(config.hidden_size, vocab_size, config.head_cutoffs, config.head_div)
        if config.tie_weights:
            # params validation guarantees embedding input and no cut-offs, so a full softmax
            assert self.embedding is not None and isinstance(self.head, SoftmaxHead)
            self.head.weight = self.embedding.weight

    def forward(
        self, idx: torch.Tensor, hidden: Hidden | None = None, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Hidden]:
        """idx (B, T) of token ids -> the next character's scores (B, T, V), log-probabilities up
        to a constant per position, and the hidden state after the last step. With targets (B, T),
        their mean cross-entropy in nats instead of the scores (what training backpropagates, and
        all an adaptive head computes of its clusters)."""
        features, hidden = self.features(idx, hidden)  # (B, T, H)
        if targets is None:
            return self.head.scores(features), hidden
        return self.head.loss(features, targets), hidden

    def features(self, idx: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        """idx (B, T) -> what the head reads, (B, T, H), and the hidden state after the last step."""
        out, hidden = self.recurrence(idx, hidden)
        return self.readout(out), hidden

    def recurrence(self, idx: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        """idx (B, T) -> the last layer's output (B, T, H) and the hidden state after the last step:
        all that feeding a prompt for its state needs."""
        if self.embedding is not None:
            x = self.embedding(idx)  # (B, T, E)
        else:
            x = F.one_hot(idx, self.vocab_size).to(self.head.weight.dtype)  # (B, T, V)
        out, hidden = self._recur(self._locked(x), hidden)  # (B, T, H)
        return self._locked(out), hidden

    def readout(self, out: torch.Tensor) -> torch.Tensor:
        """The last layer's output (..., H) as the head reads it: through the feed-forward block, if any."""
        return out if self.feedforward is None else self.feedforward(out)

    def _locked(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout with one mask per sequence: x (B, T, C) times a (B, 1, C) mask, in training."""
        p = self.config.dropout
        if not self.training or p == 0:
            return x
        return x * x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p) / (1 - p)

    def _recur(self, x: torch.Tensor, hidden: Hidden | None) -> tuple[torch.Tensor, Hidden]:
        """The RNN over x, its recurrent weights dropped (DropConnect) in training."""
        p = self.config.weight_drop
        if not self.training or p == 0:
            return self.rnn(x, hidden)
        dropped = {
            name: F.dropout(getattr(self.rnn, name), p)
            for name in self.rnn._flat_weights_names
            if name.startswith("weight_hh")
        }
        return torch.func.functional_call(self.rnn, dropped, (x, hidden))

    def step(self, idx: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
        """One character for each of B streams: idx (B,) -> scores (B, V) and the next hidden state, as
        `forward` over T = 1 but computed layer by layer with the cells' fused kernels and the other layers'
        functional forms (a module call costs more than a one-row lookup). Inference only: no dropout."""
        if self.embedding is not None:
            x = self.embedding.weight.index_select(0, idx)  # (B, E)
        else:
            x = F.one_hot(idx, self.vocab_size).to(self.head.weight.dtype)  # (B, V)
        cell = CELL_STEPS[self.config.cell]
        states = hidden_tensors(hidden)  # each (num_layers, B, H)
        out: list[list[torch.Tensor]] = [[] for _ in states]
        for layer, weights in enumerate(self.rnn.all_weights):  # [w_ih, w_hh, b_ih, b_hh] per layer
            if isinstance(hidden, tuple):
                h, c = cell(x, (states[0][layer], states[1][layer]), *weights)
                out[0].append(h)
                out[1].append(c)
                x = h
            else:
                x = cell(x, states[0][layer], *weights)
                out[0].append(x)
        return self.head.scores(self.readout(x)), hidden_from_tensors([torch.stack(layers) for layers in out])

    def initial_hidden(self, batch: int) -> Hidden:
        """The state before the first character, as the cell modules start: zeros, (num_layers, B, H)."""
        shape = (self.config.num_layers, batch, self.config.hidden_size)
        states = 2 if self.config.cell == "lstm" else 1  # (h, c) or h
        return hidden_from_tensors(
            [torch.zeros(shape, device=self.head.weight.device) for _ in range(states)]
        )

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights are counted once


def detach_hidden(hidden: Hidden) -> Hidden:
    """Cut the graph between truncated-BPTT chunks while keeping the state's values."""
    return hidden_from_tensors([h.detach() for h in hidden_tensors(hidden)])


def hidden_tensors(hidden: Hidden) -> list[torch.Tensor]:
    return list(hidden) if isinstance(hidden, tuple) else [hidden]


def hidden_from_tensors(tensors: list[torch.Tensor]) -> Hidden:
    return (tensors[0], tensors[1]) if len(tensors) == 2 else tensors[0]
