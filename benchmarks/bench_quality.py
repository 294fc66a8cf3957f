"""Quality at equal CPU time on tiny shakespeare: charlm's Trainer against a plain LSTM loop, over
training seeds (docs/benchmarks.md#quality-at-equal-training-time).

Both train in this process, one after the other, for the same wall-clock budget per seed, on the
split of nanoGPT's `shakespeare_char`: train on the first 90% of the file, score on the rest
(111,540 characters), in nats per character, by three protocols:

- stateful: `charlm.evaluation.evaluate`, a full pass in params.yaml's `evaluate` layout with the
  hidden state carried (how the pipeline scores);
- windowed: nanoGPT's `estimate_loss` protocol, random 256-character windows each read from a cold
  start; here a fixed set (`--windows`, seeded by `--window-seed`), the same for every model;
- dynamic: `charlm.evaluation.dynamic` over the whole scored text, at params.yaml's
  `evaluate.dynamic` settings.

The Trainer runs params.yaml's `lstm` recipe with `--set` overrides (a 1 MB corpus is seen many
times, so it needs dropout) under `train.max_time_s` = the budget, and scores its exported
weights, as the pipeline does. The plain loop is the recipe nanoGPT-style comparisons start from:
embedding 256 -> nn.LSTM 2 x 256 (dropout 0.1 between layers) -> linear; AdamW (lr 2e-3, weight
decay 0.01); 32 stateful streams x 128 characters; gradient clipping at 1.0; cosine decay to 10%
over the elapsed share of the budget; it stops when the budget is spent, and its final weights
are scored. With `--tune`, the held-out text is not read: the first 90% of the training text
trains and the rest is scored, so settings are chosen without the text that reports them.

    python benchmarks/bench_quality.py --corpus tinyshakespeare.txt --budget 900 --seeds 1 2 3 --no-plain \
        --set dropout=0.25 weight_drop=0.1 eval_interval=1000000 checkpoint_interval=1000
"""

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_seeds import Trained, overrides, spread, trained
from torch import nn

from charlm.data.fetch import fetch
from charlm.data.streams import Batches
from charlm.data.vocab import Vocabulary
from charlm.evaluation.dynamic import dynamic
from charlm.evaluation.evaluate import evaluate, windowed
from charlm.model.device import autocast, autocast_dtype, select_device
from charlm.model.heads import SoftmaxHead
from charlm.model.network import detach_hidden
from charlm.params.base import load_params
from charlm.params.data import FetchConfig
from charlm.params.pipeline import Params
from charlm.params.training import ModelSpec
from charlm.training.state import TrainData

TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TRAIN_FRACTION = 0.9  # nanoGPT's shakespeare_char: train on the first 90%, validate on the rest
PLAIN_LR, PLAIN_BATCH, PLAIN_SEQ_LEN = 2e-3, 32, 128  # the plain loop's recipe
WINDOW = 256  # nanoGPT's shakespeare_char block_size


def read_corpus(corpus: str, cache: Path) -> str:
    """The benchmark text from a local path or a URL, checked against tiny shakespeare's sha256."""
    source = "url" if corpus.startswith(("http://", "https://")) else "local"
    location = {"url": corpus} if source == "url" else {"path": corpus}
    fields = {"package": None, "url": None, "path": None, "timeout_s": 60.0, "retries": 3} | location
    cfg = FetchConfig.parse({"source": source, "sha256": TINY_SHAKESPEARE_SHA256, **fields})
    (path,) = fetch(cfg, cache)
    return path.read_text(encoding="utf-8")


class PlainLSTM(nn.Module):
    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, 256)
        self.rnn = nn.LSTM(256, 256, num_layers=2, dropout=0.1, batch_first=True)
        self.head = SoftmaxHead(256, vocab_size)  # a linear layer, which charlm's evaluation reads

    def features(
        self, idx: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        return self.rnn(self.embedding(idx), hidden)  # (B, T, H)

    def forward(
        self, idx: torch.Tensor, hidden: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, hidden = self.features(idx, hidden)
        return self.head(out), hidden  # (B, T, V)


def plain_loop(
    data: TrainData, budget: float, seed: int, device: torch.device, dtype: torch.dtype | None
) -> tuple[PlainLSTM, int, float]:
    """Train the reference for `budget` seconds; returns the model, its steps and its seconds."""
    torch.manual_seed(seed)
    model = PlainLSTM(len(data.vocab)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=PLAIN_LR, weight_decay=0.01)
    batches = Batches(data.train, PLAIN_BATCH, PLAIN_SEQ_LEN, device)
    hidden, step, start = None, 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < budget:
        lr = PLAIN_LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * elapsed / budget)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y, new_epoch = batches.get(step)
        with autocast(device, dtype):
            logits, hidden = model(x, None if new_epoch else hidden)  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        hidden = detach_hidden(hidden)
        step += 1
    return model, step, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default=TINY_SHAKESPEARE_URL, help="tiny shakespeare: a path or its URL")
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds for each side and seed")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[1], help="values of train.seed (and the loop's)"
    )
    parser.add_argument(
        "--set", nargs="*", default=["dropout=0.2"], metavar="KEY=VALUE", help="overrides of the lstm recipe"
    )
    parser.add_argument("--windows", type=int, default=2000, help="windows of the windowed protocol")
    parser.add_argument("--window-seed", type=int, default=0)
    parser.add_argument("--no-plain", action="store_true", help="train only charlm's side")
    parser.add_argument(
        "--tune",
        action="store_true",
        help="for choosing settings: train on the first 90%% of the training text, score on the rest",
    )
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    params = load_params(Params, Path(args.params))
    base = params.models["lstm"].model_dump() | overrides(args.set)
    device = select_device(params.models["lstm"].train.device)
    dtype = autocast_dtype(params.models["lstm"].train.precision, device)
    with tempfile.TemporaryDirectory() as tmp:
        text = read_corpus(args.corpus, Path(tmp) / "corpus")
    cut = int(len(text) * TRAIN_FRACTION)
    train, held_out = text[:cut], text[cut:]
    if args.tune:  # the held-out text stays unread: score on the end of the training text instead
        inner = int(cut * TRAIN_FRACTION)
        train, held_out = text[:inner], text[inner:cut]
    vocab = Vocabulary.build(train)
    hashes = {"train": "train", "val": "validation" if args.tune else "held out"}
    data = TrainData(train=vocab.encode(train), val=vocab.encode(held_out), vocab=vocab, sha256=hashes)
    print(
        f"{len(text):,} chars: train {len(train):,}, {hashes['val']} {len(held_out):,}; vocabulary {len(vocab)};"
        f" device={device} precision={'bf16' if dtype else 'fp32'} threads={torch.get_num_threads()}"
    )
    print(f"budget {args.budget:.0f} s each; charlm lstm with {overrides(args.set)}; seeds {args.seeds}")

    cfg = params.evaluate
    learning = cfg.dynamic.model_copy(update={"chars": len(data.val) - 1})  # the whole scored text

    def scores(model: nn.Module) -> tuple[float, float, float]:
        stream = evaluate(model, data.val, cfg.batch_size, cfg.seq_len, device, dtype)  # type: ignore[arg-type]
        windows = windowed(model, data.val, args.windows, WINDOW, args.window_seed, device, dtype)  # type: ignore[arg-type]
        _, read = dynamic(model, data.val, learning, device, dtype)  # type: ignore[arg-type]
        return stream.loss_nats, windows.loss_nats, read.loss_nats

    results: dict[str, list[tuple[float, float, float]]] = {"charlm": [], "plain": []}
    for seed in args.seeds:
        # The budget alone ends it: max_steps out of reach.
        budget = {"seed": seed, "max_time_s": args.budget, "max_steps": 10**9}
        run: Trained = trained(ModelSpec.parse(base | budget), data)
        results["charlm"].append(scores(run.net))
        print(
            f"seed {seed} charlm Trainer: {run.loop.steps:,} steps ({run.loop.train_chars:,} chars,"
            f" the last {run.loop.averaged_steps:,} averaged) in"
            f" {run.seconds:.0f} s, validation and checkpoints included: {hashes['val']}"
            " {:.4f} stateful, {:.4f} windowed, {:.4f} dynamic (nats/char)".format(*results["charlm"][-1]),
            flush=True,
        )
        if args.no_plain:
            continue
        model, plain_steps, plain_s = plain_loop(data, args.budget, seed, device, dtype)
        results["plain"].append(scores(model))
        print(
            f"seed {seed} plain loop:     {plain_steps:,} steps"
            f" ({plain_steps * PLAIN_BATCH * PLAIN_SEQ_LEN:,} chars) in {plain_s:.0f} s: {hashes['val']}"
            " {:.4f} stateful, {:.4f} windowed, {:.4f} dynamic (nats/char)".format(*results["plain"][-1]),
            flush=True,
        )
    for side, figures in results.items():
        for i, protocol in enumerate(("stateful", "windowed", "dynamic")):
            if figures:
                print(spread(f"{side} {protocol}: ", [f[i] for f in figures]))


if __name__ == "__main__":
    main()
