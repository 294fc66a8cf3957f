"""Text generation: a running batch of rows, each with its own prompt and sampling options, the
hidden state carried.

Every generation is a row of a `Decoder`: it joins with its own prompt and sampling options, then
all rows advance together, one character each per model step (drawn by `charlm.generation.
sampling`), and each leaves when it has its length. A row's prompt rides along the same way: each
step feeds a prompt character where it would feed a sampled one, so joining costs no call of its
own (a prompt longer than `STEPPED_PROMPT_CHARS` has the rest fed first, in one pass of the module).
"""

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from charlm.data.vocab import Vocabulary
from charlm.errors import CharlmError
from charlm.generation.sampling import Draws, sample_next
from charlm.model.network import CharLM, hidden_from_tensors, hidden_tensors
from charlm.params.generate import SamplingOptions

# Through the batch, a prompt character costs what a generated one does. One pass of the module
# (oneDNN's fused RNN on the CPU) costs far less per character of a long prompt, but its fixed cost
# (~1 ms on the reference machine) is that of some twenty characters riding along in a batch of 16.
STEPPED_PROMPT_CHARS = 32


class SamplingError(CharlmError):
    """A sampling request that cannot be served: bad values or characters the model never saw."""


@dataclass(frozen=True)
class Request:
    """A checked generation request: the encoded prompt and how to sample."""

    prompt: torch.Tensor  # (1, T) token ids
    options: SamplingOptions


def request(vocab: Vocabulary, prompt: str, options: SamplingOptions) -> Request:
    """Check a prompt and its options against the vocabulary; bad requests raise SamplingError."""
    if not prompt:
        raise SamplingError("the prompt is empty; give at least one character to start from")
    if options.top_k is not None and options.top_k > len(vocab):
        raise SamplingError(f"top_k: must be in 1..{len(vocab)} (the vocabulary size), got {options.top_k}")
    missing = vocab.unknown_chars(prompt)
    if missing and options.unknown == "error":
        raise SamplingError(
            f"prompt characters not in the model's vocabulary: {missing!r}"
            " (set unknown to 'unk' to map them to <unk>)"
        )
    return Request(torch.from_numpy(vocab.encode(prompt).astype("int64")).view(1, -1), options)


@dataclass(eq=False)
class Row:
    """One generation in a decoder: its options, its draws, the prompt ids it has yet to feed and
    the characters so far."""

    options: SamplingOptions
    draws: Draws
    pending: list[int]
    chars: list[str] = field(default_factory=list)

    @property
    def prompting(self) -> bool:
        return bool(self.pending)

    @property
    def done(self) -> bool:
        return len(self.chars) >= self.options.length


class Decoder:
    """A running batch of generations over one model. Not thread-safe: one thread drives it."""

    def __init__(self, model: CharLM, vocab: Vocabulary) -> None:
        self.model = model.eval()
        self.vocab = vocab
        self.device = next(model.parameters()).device
        self.rows: list[Row] = []
        self.logits: torch.Tensor | None = None  # (B, V): the next character's logits per row
        self.hidden: list[torch.Tensor] = []  # each (num_layers, B, H)
        self.settings: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None] | None = None

    @torch.inference_mode()
    def add(self, req: Request) -> Row:
        """Join the batch; the next steps feed the request's prompt, then sample."""
        prompt = req.prompt.to(self.device)  # (1, T)
        vocab_size = self.model.vocab_size
        if prompt.numel() == 0 or prompt.min() < 0 or prompt.max() >= vocab_size:
            # Checked here: inside the batch's step, a bad id would fail every row.
            raise IndexError(f"a prompt needs ids in 0..{vocab_size - 1}, got {prompt.tolist()}")
        head, tail = prompt[:, :-STEPPED_PROMPT_CHARS], prompt[:, -STEPPED_PROMPT_CHARS:]
        hidden = self.model(head)[1] if head.numel() else self.model.initial_hidden(1)
        row = Row(req.options, Draws(req.options.seed), tail[0].tolist())
        self.rows.append(row)
        # A prompting row's logits are never sampled from: the step feeds its prompt instead.
        last = torch.zeros(1, vocab_size, device=self.device)  # (1, V)
        self.logits = last if self.logits is None else torch.cat([self.logits, last])
        tensors = hidden_tensors(hidden)  # each (num_layers, 1, H)
        if self.hidden:
            tensors = [torch.cat(pair, 1) for pair in zip(self.hidden, tensors, strict=True)]
        self.hidden = tensors
        self.settings = None
        return row

    @torch.inference_mode()
    def remove(self, leaving: set[Row]) -> None:
        """Take rows out of the batch (finished, or abandoned by their caller)."""
        keep = [i for i, row in enumerate(self.rows) if row not in leaving]
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.logits, self.hidden = None, []
        else:
            index = torch.tensor(keep, device=self.device)
            assert self.logits is not None
            self.logits = self.logits.index_select(0, index)
            self.hidden = [h.index_select(1, index) for h in self.hidden]
        self.settings = None

    def _settings(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        if self.settings is None:
            options = [row.options for row in self.rows]
            temperature = torch.tensor([o.temperature for o in options], device=self.device).unsqueeze(1)
            top_k = top_p = None  # each only when some row asks for it
            if any(o.top_k is not None for o in options):
                k = [len(self.vocab) if o.top_k is None else o.top_k for o in options]
                top_k = torch.tensor(k, device=self.device).unsqueeze(1)
            if any(o.top_p is not None and o.top_p < 1 for o in options):
                p = [2.0 if o.top_p is None or o.top_p >= 1 else o.top_p for o in options]
                top_p = torch.tensor(p, device=self.device).unsqueeze(1)
            self.settings = (temperature, top_k, top_p)  # each (B, 1)
        return self.settings

    @torch.inference_mode()
    def step(self) -> None:
        """Feed every row its next character: a prompt character while it has some left, else a
        sampled one, which it keeps; rows that reach their length leave the batch."""
        if not self.rows:
            return
        assert self.logits is not None
        prompting = [row.prompting for row in self.rows]
        # A prompting row takes no draw, so a row's draws depend on its own characters alone.
        u = [0.0 if p else row.draws.next() for row, p in zip(self.rows, prompting, strict=True)]
        ids = sample_next(self.logits, *self._settings(), torch.tensor(u, device=self.device))  # (B,)
        if any(prompting):
            pending = [row.pending.pop(0) if p else 0 for row, p in zip(self.rows, prompting, strict=True)]
            ids = torch.where(
                torch.tensor(prompting, device=self.device), torch.tensor(pending, device=self.device), ids
            )
        for row, i, p in zip(self.rows, ids.tolist(), prompting, strict=True):
            if not p:
                row.chars.append(self.vocab.itos[i])
        finished = [row for row in self.rows if row.done]
        if finished:
            ids = ids[[not row.done for row in self.rows]]
            self.remove(set(finished))
        if self.rows:
            self.logits, hidden = self.model.step(ids, hidden_from_tensors(self.hidden))
            self.hidden = hidden_tensors(hidden)


def generate(model: CharLM, vocab: Vocabulary, prompt: str, options: SamplingOptions) -> Iterator[str]:
    """Check the request, then return an iterator over the generated characters (the prompt itself
    is not repeated). Bad requests raise here, before a caller has shown anything."""
    return _stream(Decoder(model, vocab), request(vocab, prompt, options))


def _stream(decoder: Decoder, req: Request) -> Iterator[str]:
    row, sent = decoder.add(req), 0
    while not row.done:
        decoder.step()
        yield from row.chars[sent:]
        sent = len(row.chars)
