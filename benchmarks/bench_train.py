"""Training throughput: charlm's Trainer against a bare fused-RNN loop at the same configuration.

Both run in this process on the same synthetic data, one after the other. The bare loop is the
least a training step can do (embedding, fused RNN, head, cross-entropy, AdamW); the Trainer adds
stream batching, the LR schedule, clipping, periodic full validation and checkpoints, so the
printed ratio is what the real training stage costs over the minimum.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from charlm.data.vocab import Vocabulary
from charlm.model.device import autocast, autocast_dtype, select_device
from charlm.model.network import CharLM, detach_hidden
from charlm.params.base import load_params
from charlm.params.pipeline import Params
from charlm.params.training import ArchConfig, ModelSpec
from charlm.tracking.runs import RunTracker, StageTracking
from charlm.tracking.store import connect
from charlm.training.state import TrainData
from charlm.training.trainer import Trainer


def bare_loop(
    config: ArchConfig,
    vocab_size: int,
    data: np.ndarray,
    batch_size: int,
    seq_len: int,
    steps: int,
    device: torch.device,
    dtype: torch.dtype | None,
) -> float:
    model = CharLM(config, vocab_size).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    length = len(data) // batch_size
    streams = (
        torch.from_numpy(data[: batch_size * length].astype(np.int64)).view(batch_size, length).to(device)
    )
    hidden = None
    start = time.perf_counter()
    for step in range(steps):
        pos = (step * seq_len) % (length - seq_len - 1)
        x, y = streams[:, pos : pos + seq_len], streams[:, pos + 1 : pos + seq_len + 1]
        with autocast(device, dtype):
            loss, hidden = model(x, hidden, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hidden = detach_hidden(hidden)
    loss.item()
    return steps * batch_size * seq_len / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lstm", help="a model under `models:` in params.yaml")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument(
        "--val-chars", type=int, default=525_390, help="validation split size (default corpus)"
    )
    args = parser.parse_args()

    run = load_params(Params, Path(args.params)).models[args.model]
    cfg = run.train
    rng = np.random.default_rng(0)
    vocab = Vocabulary.build("".join(chr(32 + i) for i in range(84)))
    train_ids = rng.integers(1, len(vocab), 4_000_000).astype(np.uint8)
    # The real stage validates over the whole split every eval_interval steps; this shorter run
    # validates once, over a share of the split scaled so that it costs the same fraction of time.
    val_ids = rng.integers(1, len(vocab), int(args.val_chars * args.steps / cfg.eval_interval)).astype(
        np.uint8
    )
    device = select_device(cfg.device)
    dtype = autocast_dtype(cfg.precision, device)
    shorter = {
        "max_steps": args.steps,
        "eval_interval": args.steps,
        "warmup_steps": min(cfg.warmup_steps, args.steps),
    }
    run = ModelSpec(**run.model_dump() | shorter)
    cfg = run.train
    print(f"device={device} precision={'bf16' if dtype else 'fp32'} threads={torch.get_num_threads()}")
    print(
        f"{run.arch}\nbatch_size={cfg.batch_size} seq_len={cfg.seq_len} steps={args.steps} val_chars={len(val_ids):,}"
    )

    # This machine's speed drifts by several percent over a minute: time the bare loop before and
    # after the Trainer and compare against their mean.
    bare = (run.arch, len(vocab), train_ids, cfg.batch_size, cfg.seq_len, args.steps, device, dtype)
    before = bare_loop(*bare)
    print(f"bare fused loop: {before:,.0f} chars/s")

    with tempfile.TemporaryDirectory() as tmp:
        client = connect(f"sqlite:///{tmp}/mlflow.db")
        data = TrainData(train_ids, val_ids, vocab, {"train": "synthetic", "val": "synthetic"})
        trainer = Trainer(run, data, Path(tmp) / "ckpt")
        with RunTracker.start(StageTracking(client, "bench", {}), "bench", {}, {}) as tracker:
            start = time.perf_counter()
            trainer.fit(tracker, Path(tmp) / "best", [], lambda *_: None)
            total = time.perf_counter() - start
        loop = trainer.loop
    overall = loop.train_chars / total
    in_steps = loop.train_chars / loop.train_time_s
    print(f"charlm Trainer:  {overall:,.0f} chars/s overall ({in_steps:,.0f} in steps alone)")
    after = bare_loop(*bare)
    print(f"bare fused loop: {after:,.0f} chars/s (again)")
    print(
        f"ratio: {overall / ((before + after) / 2):.2f}x of the bare loop (validation and checkpoints included)"
    )


if __name__ == "__main__":
    main()
