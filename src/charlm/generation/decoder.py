"""Text generation: a running batch of rows (`Decoder`), each with its own prompt, sampling options
and hidden state, advancing one character per model step; a long prompt's head goes through the
module in slices of `PROMPT_SLICE`. A row's text does not depend on what it is batched with."""

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from charlm.data.vocab import Vocabulary
from charlm.generation.prompts import checked
from charlm.generation.sampling import Draws, sample_next
from charlm.model.network import CharLM, Step, hidden_from_tensors, hidden_tensors
from charlm.params.generation import SamplingOptions
from charlm.progress import OnProgress, quiet

# A slice of 16 characters through the module (oneDNN's fused RNN on the CPU) costs 2.4 ms for the
# default LSTM on one thread, 0.15 ms a character; a character riding along costs a batch's step
# (0.6 ms for 16 rows), shared by them all. Slices feed long prompts 7 times faster than steps
# would, and keep a step beside one at most 2.4 ms longer.
PROMPT_SLICE = 16


@dataclass(frozen=True)
class Task:
    """One text to generate, checked: the encoded prompt and how to sample."""

    prompt: torch.Tensor  # (1, T) token ids
    options: SamplingOptions


def task_for(vocab: Vocabulary, prompt: str, options: SamplingOptions) -> Task:
    """Check a prompt and its options against the vocabulary (`prompts.checked`), the prompt put in
    the normal form of the text the vocabulary was built from; a bad prompt or option raises SamplingError."""
    ids = vocab.encode(checked(vocab, prompt, options))
    return Task(torch.from_numpy(ids.astype("int64")).view(1, -1), options)


@dataclass(eq=False)
class Row:
    """One generation in a decoder: its options, its draws, its prompt ids and how many it has fed,
    and the characters so far."""

    options: SamplingOptions
    draws: Draws
    prompt: list[int]
    fed: int = 0
    slices: int = 0  # slices of its prompt fed through the module
    chars: list[str] = field(default_factory=list)

    @property
    def pending(self) -> int:
        return len(self.prompt) - self.fed

    @property
    def slicing(self) -> bool:
        """Its prompt is fed in slices, and it sits out the batch's steps until its last slice."""
        return self.pending > PROMPT_SLICE

    @property
    def prompting(self) -> bool:
        return self.pending > 0

    @property
    def done(self) -> bool:
        return len(self.chars) >= self.options.length


class Decoder:
    """A running batch of generations over one model. Not thread-safe: one thread drives it."""

    def __init__(self, net: CharLM, vocab: Vocabulary, net_step: Step | None = None) -> None:
        """`net_step`: the step every row takes (by default `net.step`; the served model's may be int8); a long
        prompt's slices go through the module."""
        self.net = net.eval()
        self.net_step = net.step if net_step is None else net_step
        self.vocab = vocab
        self.device = next(net.parameters()).device
        self.rows: list[Row] = []
        self.logits: torch.Tensor | None = None  # (B, V): the next character's logits per row
        self.hidden: list[torch.Tensor] = []  # each (num_layers, B, H)
        self.row_options: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None] | None = None

    @torch.inference_mode()
    def add(self, task: Task) -> Row:
        """Join the batch; the next steps feed the task's prompt, then sample."""
        prompt = task.prompt.to(self.device)  # (1, T)
        vocab_size = self.net.vocab_size
        if prompt.numel() == 0 or prompt.min() < 0 or prompt.max() >= vocab_size:
            # Checked here: inside the batch's step, a bad id would fail every row.
            raise IndexError(f"a prompt needs ids in 0..{vocab_size - 1}, got {prompt.tolist()}")
        row = Row(task.options, Draws(task.options.seed), prompt[0].tolist())
        self.rows.append(row)
        # A prompting row's logits are never sampled from: the step feeds its prompt instead.
        last = torch.zeros(1, vocab_size, device=self.device)  # (1, V)
        self.logits = last if self.logits is None else torch.cat([self.logits, last])
        tensors = hidden_tensors(self.net.initial_hidden(1))  # each (num_layers, 1, H)
        if self.hidden:
            tensors = [torch.cat(pair, 1) for pair in zip(self.hidden, tensors, strict=True)]
        self.hidden = tensors
        self.row_options = None
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
        self.row_options = None

    def _row_options(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        if self.row_options is None:
            options = [row.options for row in self.rows]
            temperature = torch.tensor([o.temperature for o in options], device=self.device).unsqueeze(1)
            top_k = top_p = None  # each only when some row asks for it
            if any(o.top_k is not None for o in options):
                k = [len(self.vocab) if o.top_k is None else o.top_k for o in options]
                top_k = torch.tensor(k, device=self.device).unsqueeze(1)
            if any(o.top_p is not None and o.top_p < 1 for o in options):
                p = [2.0 if o.top_p is None or o.top_p >= 1 else o.top_p for o in options]
                top_p = torch.tensor(p, device=self.device).unsqueeze(1)
            self.row_options = (temperature, top_k, top_p)  # each (B, 1)
        return self.row_options

    @torch.inference_mode()
    def step(self) -> None:
        """Feed one slice of a long prompt, then feed every other row its next character: a prompt
        character while it has some left, else a sampled one, which it keeps; rows that reach
        their length leave the batch."""
        if not self.rows:
            return
        assert self.logits is not None
        self._slice()
        sitting = [row.slicing for row in self.rows]
        prompting = [row.prompting and not out for row, out in zip(self.rows, sitting, strict=True)]
        # Only a row that samples takes a draw, so a row's draws depend on its own characters alone.
        u = [0.0 if row.prompting else row.draws.next() for row in self.rows]
        ids = sample_next(self.logits, *self._row_options(), torch.tensor(u, device=self.device))  # (B,)
        if any(prompting):
            fed = [row.prompt[row.fed] if p else 0 for row, p in zip(self.rows, prompting, strict=True)]
            ids = torch.where(
                torch.tensor(prompting, device=self.device), torch.tensor(fed, device=self.device), ids
            )
        for row, i, p, out in zip(self.rows, ids.tolist(), prompting, sitting, strict=True):
            if p:
                row.fed += 1
            elif not out:
                row.chars.append(self.vocab.itos[i])
        if finished := [row for row in self.rows if row.done]:
            ids = ids[[not row.done for row in self.rows]]
            sitting = [out for row, out in zip(self.rows, sitting, strict=True) if not row.done]
            self.remove(set(finished))
        if self.rows:
            before = self.hidden
            self.logits, hidden = self.net_step(ids, hidden_from_tensors(before))
            self.hidden = hidden_tensors(hidden)
            if any(sitting):  # the rows sitting out keep their state
                keep = torch.tensor(sitting, device=self.device).view(1, -1, 1)
                self.hidden = [
                    torch.where(keep, old, new) for old, new in zip(before, self.hidden, strict=True)
                ]

    def _slice(self) -> None:
        """Feed the next slice of one long prompt through the module: the row that has had the
        fewest slices, the earliest joined among them."""
        waiting = [i for i, row in enumerate(self.rows) if row.slicing]
        if not waiting:
            return
        i = min(waiting, key=lambda i: self.rows[i].slices)
        row = self.rows[i]
        size = min(PROMPT_SLICE, row.pending - PROMPT_SLICE)  # the last PROMPT_SLICE ride along
        ids = torch.tensor(row.prompt[row.fed : row.fed + size], device=self.device).view(1, -1)  # (1, S)
        _, hidden = self.net.recurrence(ids, hidden_from_tensors([h[:, i : i + 1] for h in self.hidden]))
        for h, new in zip(self.hidden, hidden_tensors(hidden), strict=True):
            h[:, i : i + 1] = new
        row.fed, row.slices = row.fed + size, row.slices + 1


def generate(
    net: CharLM, vocab: Vocabulary, prompt: str, options: SamplingOptions, net_step: Step | None = None
) -> Iterator[str]:
    """Check the prompt and options, then return an iterator over the characters `net_step` (`Decoder`'s)
    generates (the prompt itself is not repeated). Bad ones raise here, before a caller has shown anything."""
    return _stream(Decoder(net, vocab, net_step), task_for(vocab, prompt, options))


def _stream(decoder: Decoder, task: Task) -> Iterator[str]:
    row, sent = decoder.add(task), 0
    while not row.done:
        decoder.step()
        yield from row.chars[sent:]
        sent = len(row.chars)


def generate_all(
    net: CharLM,
    vocab: Vocabulary,
    wanted: list[tuple[str, SamplingOptions]],
    on_progress: OnProgress = quiet,
    net_step: Step | None = None,
) -> list[str]:
    """The text after each (prompt, options), all generated together in one batch (a seeded text is the one it
    would be alone) by `net_step` (`Decoder`'s); a bad prompt raises before any is generated. Progress in
    characters generated."""
    decoder = Decoder(net, vocab, net_step)
    rows = [decoder.add(task) for task in [task_for(vocab, prompt, options) for prompt, options in wanted]]
    total = sum(options.length for _, options in wanted)
    while decoder.rows:
        decoder.step()
        on_progress(sum(len(row.chars) for row in rows), total)
    return ["".join(row.chars) for row in rows]
