"""The training step, A/B: the train stage's own `Trainer.train_step` at params.yaml's recipe for one
model, under each way of running it this CPU offers, timed in one process.

Variants: fp32; fp32 with oneDNN's RNN kernels computing internally in bf16
(`torch.backends.mkldnn.rnn.fp32_precision = "bf16"`); bf16 autocast (what `precision: auto`
picks on CPUs with native bf16); each of the last two with AdamW's fused CPU kernel instead of its
default multi-tensor one; fp32 and bf16 with the recurrence run sequence-first (the layout
`nn.LSTM` computes in, so `batch_first`'s transposes of its input and output go); and the fastest
on one thread instead of all. Every variant trains from the same seed on the same synthetic data,
so the losses after the timed steps say whether a variant computes the same training (fp32
variants agree closely; bf16 ones round differently). `--set KEY=VALUE ...` adds the recipe with
those changes (an option of the network, say) in fp32 and in bf16 autocast, beside today's.
`--mogrifier R` adds, in bf16 autocast and with `--set`'s changes, the LSTM run cell by cell on the
same weights (what any cell of its own costs once it leaves the fused kernel), and the Mogrifier
LSTM with R rounds on top (`CellByCell`): the cost of a lever before any of it is built into the
network.

The machine drifts by 10% within a minute, so the variants take turns: `--rounds` rounds, each
timing `--steps` steps of every variant in order (after `--warmup` untimed ones the first round),
and each variant's figure is its median round, with the spread beside it.
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_seeds import overrides

from charlm.data.vocab import Vocabulary
from charlm.model.network import CharLM, Hidden
from charlm.params.base import load_params
from charlm.params.pipeline import Params
from charlm.params.training import ModelSpec
from charlm.training.state import TrainData
from charlm.training.trainer import Trainer


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str  # the train.precision it runs at
    onednn_bf16: bool = False  # oneDNN's RNN internal precision bf16, under fp32
    fused: bool = False  # AdamW(fused=True)
    threads: int | None = None  # torch threads; None: as the process has
    sequence_first: bool = False  # CharLM's forward in (T, B, ...) layout, see SequenceFirst
    changes: tuple[tuple[str, object], ...] = ()  # of the recipe, as `--set` gives them
    mogrify: int | None = None  # None: the fused LSTM; else CellByCell with this many rounds


VARIANTS = [
    Variant("fp32", "fp32"),
    Variant("fp32, oneDNN RNN in bf16", "fp32", onednn_bf16=True),
    Variant("fp32, fused AdamW", "fp32", fused=True),
    Variant("fp32, sequence-first", "fp32", sequence_first=True),
    Variant("bf16 autocast", "bf16"),
    Variant("bf16 autocast, fused AdamW", "bf16", fused=True),
    Variant("bf16 autocast, sequence-first", "bf16", sequence_first=True),
    Variant("bf16 autocast, fused AdamW, 1 thread", "bf16", fused=True, threads=1),
]


class SequenceFirst(torch.nn.Module):
    """`CharLM.forward` on the same weights with the recurrence in (T, B, ...) layout: the batch is
    transposed once as ids, and the logits turned back to a (B, T, V) view for the loss, which copies
    it to flatten it. For a full softmax head, without locked dropout (params.yaml's `lstm` has none):
    its masks are laid out by batch."""

    def __init__(self, model: CharLM) -> None:
        super().__init__()
        if model.config.dropout or model.embedding is None:
            raise SystemExit("the sequence-first variant is written for embedding input without dropout")
        self.model = model
        model.rnn.batch_first = False

    def forward(
        self, idx: torch.Tensor, hidden: Hidden | None, targets: torch.Tensor
    ) -> tuple[torch.Tensor, Hidden]:
        assert self.model.embedding is not None
        x = self.model.embedding(idx.t())  # (T, B, E)
        out, hidden = self.model._recur(x, hidden)  # (T, B, H); weight drop as in training
        logits = self.model.head.scores(self.model.readout(out)).transpose(0, 1)  # (B, T, V)
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten()), hidden


class CellByCell(torch.nn.Module):
    """`CharLM.forward` for a one-layer LSTM over an embedding, the cell stepped through
    `torch.lstm_cell` one position at a time on the same weights (locked dropout and weight drop as
    in training), and with `rounds` > 0 the Mogrifier LSTM (Melis et al. 2019): before each step
    the input and the state gate each other in turn, x <- 2 sigmoid(Q h) * x in the paper's odd
    rounds, h <- 2 sigmoid(R x) * h in its even ones, `rounds` full-rank gates without bias. The
    gates are added to the network (and the optimiser) with the rest as it is, so the step's cost
    is all this measures; nothing here is trained to a figure."""

    def __init__(self, model: CharLM, optimizer: torch.optim.Optimizer, rounds: int) -> None:
        super().__init__()
        cfg = model.config
        if cfg.cell != "lstm" or cfg.num_layers != 1 or model.embedding is None:
            raise SystemExit("--mogrifier is written for a one-layer LSTM over an embedding")
        self.model = model
        sizes = (cfg.hidden_size, cfg.embedding_size)  # Q: state -> input; R: input -> state
        model.mogrifier = torch.nn.ModuleList(
            torch.nn.Linear(*(sizes if r % 2 == 0 else sizes[::-1]), bias=False) for r in range(rounds)
        )
        if rounds:
            optimizer.add_param_group({"params": list(model.mogrifier.parameters())})

    def forward(
        self, idx: torch.Tensor, hidden: Hidden | None, targets: torch.Tensor
    ) -> tuple[torch.Tensor, Hidden]:
        model = self.model
        assert model.embedding is not None
        x = model._locked(model.embedding(idx))  # (B, T, E)
        h, c = (s[0] for s in (hidden if isinstance(hidden, tuple) else model.initial_hidden(idx.size(0))))
        w_ih, w_hh, b_ih, b_hh = model.rnn.all_weights[0]
        if model.config.weight_drop:
            w_hh = F.dropout(w_hh, model.config.weight_drop)
        out = []
        for t in range(x.size(1)):
            xt = x[:, t]  # (B, E)
            for r, gate in enumerate(model.mogrifier):  # r = 0, 2, ...: the paper's rounds 1, 3, ...
                if r % 2 == 0:
                    xt = 2 * torch.sigmoid(gate(h)) * xt
                else:
                    h = 2 * torch.sigmoid(gate(xt)) * h
            h, c = torch.lstm_cell(xt, (h, c), w_ih, w_hh, b_ih, b_hh)  # each (B, H)
            out.append(h)
        features = model.readout(model._locked(torch.stack(out, 1)))  # (B, T, H)
        return model.head.loss(features, targets), (h.unsqueeze(0), c.unsqueeze(0))


@contextmanager
def conditions(variant: Variant) -> Iterator[None]:
    """The process-wide switches a variant runs under, restored after."""
    rnn, threads = torch.backends.mkldnn.rnn, torch.get_num_threads()
    before = rnn.fp32_precision
    rnn.fp32_precision = "bf16" if variant.onednn_bf16 else before
    torch.set_num_threads(variant.threads or threads)
    try:
        yield
    finally:
        rnn.fp32_precision = before
        torch.set_num_threads(threads)


def trainer_for(spec: ModelSpec, variant: Variant, data: TrainData, tmp: Path) -> Trainer:
    spec = ModelSpec(**spec.model_dump() | dict(variant.changes) | {"precision": variant.precision})
    trainer = Trainer(spec, data, tmp / variant.name.replace(" ", "_"))
    trainer.net.train()
    if variant.fused:  # the same groups and settings, the fused kernel
        trainer.optimizer = torch.optim.AdamW(trainer.optimizer.param_groups, fused=True)
    if variant.sequence_first:
        trainer.parallel = SequenceFirst(trainer.net)
    if variant.mogrify is not None:
        trainer.parallel = CellByCell(trainer.net, trainer.optimizer, variant.mogrify)
    return trainer


def timed(step: Callable[[int], float], first: int, steps: int) -> tuple[float, float]:
    """Seconds per step over `steps` steps from `first`, and the last loss."""
    start = time.perf_counter()
    for i in range(first, first + steps):
        loss = step(i)
    return (time.perf_counter() - start) / steps, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lstm", help="a model under `models:` in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="a changed recipe beside today's"
    )
    parser.add_argument(
        "--mogrifier", type=int, metavar="R", help="add the LSTM cell by cell, and mogrified with R rounds"
    )
    args = parser.parse_args()
    changes = tuple(overrides(args.set).items())
    variants = VARIANTS + [
        Variant(f"{name}, {' '.join(args.set)}", precision, changes=changes)
        for name, precision in (("fp32", "fp32"), ("bf16 autocast", "bf16"))
        if changes
    ]
    if args.mogrifier is not None:  # on the recipe `--set` gives, if any
        variants += [
            Variant("bf16 autocast, cell by cell", "bf16", changes=changes, mogrify=0),
            Variant(
                f"bf16 autocast, Mogrifier {args.mogrifier} rounds",
                "bf16",
                changes=changes,
                mogrify=args.mogrifier,
            ),
        ]

    spec = load_params(Params, Path(args.params)).models[args.model]
    rng = np.random.default_rng(0)
    vocab = Vocabulary.build("".join(chr(32 + i) for i in range(84)))
    ids = rng.integers(1, len(vocab), 2_000_000).astype(np.uint8)
    data = TrainData(ids, ids[:10_000], vocab, {"train": "synthetic", "val": "synthetic"})
    cfg = spec.train
    print(f"{spec.arch}\nbatch {cfg.batch_size} x {cfg.seq_len}, threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as tmp:
        trainers = [trainer_for(spec, v, data, Path(tmp)) for v in variants]
        seconds: dict[str, list[float]] = {v.name: [] for v in variants}
        losses: dict[str, float] = {}
        for variant, trainer in zip(variants, trainers, strict=True):
            with conditions(variant):
                timed(trainer.train_step, 0, args.warmup)
        for r in range(args.rounds):
            first = args.warmup + r * args.steps
            for variant, trainer in zip(variants, trainers, strict=True):
                with conditions(variant):
                    per_step, losses[variant.name] = timed(trainer.train_step, first, args.steps)
                seconds[variant.name].append(per_step)
        parameters = {v.name: t.net.num_parameters() for v, t in zip(variants, trainers, strict=True)}

    base = statistics.median(seconds[variants[0].name])
    print(
        f"{'variant':40} {'ms/step':>8} {'spread':>14} {'vs fp32':>8} {'chars/s':>9} {'params':>10}  loss after"
    )
    chars = cfg.batch_size * cfg.seq_len
    for variant in variants:
        runs = seconds[variant.name]
        mid = statistics.median(runs)
        spread = f"{min(runs) * 1e3:.1f}-{max(runs) * 1e3:.1f}"
        print(
            f"{variant.name:40} {mid * 1e3:8.1f} {spread:>14} {base / mid:7.2f}x {chars / mid:9,.0f}"
            f" {parameters[variant.name]:10,}  {losses[variant.name]:.5f}"
        )


if __name__ == "__main__":
    main()
