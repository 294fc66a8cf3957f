"""The training loop: stateful truncated BPTT over B parallel streams (`charlm.streams`), the hidden
state carried (detached) from chunk to chunk and reset at each epoch; early stopping on validation.

Everything needed to continue (weights, optimizer moments, hidden state, RNG states, step,
best-so-far, metric history) is checkpointed atomically every `checkpoint_interval` steps; a rerun
resumes from it and, on CPU, ends with weights bit-identical to an uninterrupted run. Under
torchrun each rank trains on its share of the streams inside DDP; checkpoints hold the whole
batch's hidden state, so a run resumes on any number of processes. Rank 0 alone validates,
exports, writes files and talks to MLflow.
"""

import dataclasses
import hashlib
import json
import math
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from charlm import checkpoint, io
from charlm.device import autocast, autocast_dtype, select_device
from charlm.distributed import SINGLE, World
from charlm.errors import CharlmError, TrainingInterrupted
from charlm.evaluation import evaluate
from charlm.model import CharLM, Hidden, detach_hidden, hidden_from_tensors, hidden_tensors
from charlm.params import ModelRun
from charlm.recipe import lr_at, make_optimizer
from charlm.streams import Batches
from charlm.tracking import RunTracker
from charlm.vocab import Vocabulary

STATE_FILE = "state.safetensors"
BEST_DIR = "best"


class TrainingDiverged(CharlmError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainData:
    train: np.ndarray
    val: np.ndarray
    vocab: Vocabulary

    @cached_property
    def sha256(self) -> str:
        """Identifies the encoded train and val splits."""
        return hashlib.sha256(self.train.tobytes() + self.val.tobytes()).hexdigest()


# The curves, one row per logged step; their field names are the metric names everywhere.
@dataclass(frozen=True)
class TrainPoint:
    train_loss_nats: float
    lr: float


@dataclass(frozen=True)
class ValPoint:
    val_loss_nats: float
    val_bpc: float


CURVES = {"train": TrainPoint, "val": ValPoint}


def fingerprint(run: ModelRun, seed: int, data: TrainData) -> str:
    """Identifies what a checkpoint was trained on, and in which state format; a mismatch means
    start afresh, not resume."""
    setup = [dataclasses.asdict(run), seed, data.vocab.hash, data.sha256, checkpoint.STATE_FORMAT]
    return hashlib.sha256(json.dumps(setup, sort_keys=True).encode()).hexdigest()


@contextmanager
def stop_signals() -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM instead of dying, so the loop can checkpoint first."""
    received: list[int] = []
    previous = {
        s: signal.signal(s, lambda signum, _frame: received.append(signum))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@dataclass
class TrainState:
    step: int = 0
    best_val_loss: float = math.inf
    best_step: int = 0
    bad_evals: int = 0
    tokens_seen: int = 0
    train_seconds: float = 0.0  # in training steps only
    wall_seconds: float = 0.0  # steps, evaluation and checkpoints, over every resumed segment
    finished: bool = False
    stopped_early: bool = False
    run_id: str = ""  # the MLflow run these steps are logged to
    history: dict[str, list[list[float]]] = field(default_factory=lambda: {name: [] for name in CURVES})


class Trainer:
    def __init__(
        self, run: ModelRun, seed: int, data: TrainData, checkpoint_dir: Path, world: World = SINGLE
    ) -> None:
        self.run, self.cfg, self.data, self.world = run, run.train, data, world
        self.device = select_device(self.cfg.device)
        if self.device.type == "cuda" and world.size > 1:
            self.device = torch.device("cuda", world.local_rank)
        self.dtype = autocast_dtype(self.cfg.precision, self.device)
        self.checkpoint_dir = checkpoint_dir
        self.seed = seed
        self.fingerprint = fingerprint(run, seed, data)
        torch.manual_seed(seed)  # the same initial weights on every rank
        self.model = CharLM(dataclasses.replace(run.model, vocab_size=len(data.vocab))).to(self.device)
        self.network: torch.nn.Module = self.model
        if world.size > 1:
            # DDP broadcasts rank 0's weights and averages gradients during backward.
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = DistributedDataParallel(self.model, device_ids=ids)
            torch.manual_seed(seed + world.rank)  # distinct dropout masks per rank
        self.optimizer = make_optimizer(self.model, self.cfg)
        self.rows = world.shard(self.cfg.batch_size)
        self.batches = Batches(data.train, self.cfg.batch_size, self.cfg.seq_len, self.device, self.rows)
        self.state = TrainState()
        self.hidden: Hidden | None = None

    # -- checkpoints -------------------------------------------------------------------------
    def save_state(self) -> None:
        """Write the resumable state (rank 0 writes; every rank must call, to share its part)."""
        # The whole batch's hidden state and every rank's RNG, so any process count can resume.
        hidden = []
        if self.hidden is not None:
            hidden = [torch.cat(self.world.gather(t), dim=1) for t in hidden_tensors(self.hidden)]
        rngs = self.world.gather(torch.get_rng_state())
        if not self.world.is_main:
            return
        tensors = {f"hidden.{i}": t.detach().cpu() for i, t in enumerate(hidden)}  # (layers, B, H)
        tensors |= {f"rng.cpu.{rank}": rng for rank, rng in enumerate(rngs)}
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        meta = {"fingerprint": self.fingerprint, "trainer": dataclasses.asdict(self.state)}
        checkpoint.save_state(self.checkpoint_dir / STATE_FILE, self.model, self.optimizer, tensors, meta)

    def load_state(self) -> bool:
        """Restore a resumable checkpoint; False: there is none to resume, training starts afresh."""
        path = self.checkpoint_dir / STATE_FILE
        loaded = checkpoint.load_state(path)
        if loaded is None:
            return False
        tensors, meta = loaded
        if meta["fingerprint"] != self.fingerprint or meta["trainer"]["finished"]:
            reason = "finished" if meta["trainer"]["finished"] else "made with other params, data or version"
            if self.world.is_main:
                print(f"train: {path} was {reason}; training from scratch", file=sys.stderr)
            return False
        checkpoint.restore_state(self.model, self.optimizer, tensors, meta, str(path))
        hidden = [
            tensors[f"hidden.{i}"][:, self.rows].to(self.device) for i in range(2) if f"hidden.{i}" in tensors
        ]
        self.hidden = hidden_from_tensors(hidden) if hidden else None
        if (rng := f"rng.cpu.{self.world.rank}") in tensors:
            torch.set_rng_state(tensors[rng])
        else:  # saved by fewer processes than resume it
            torch.manual_seed(self.seed + self.world.rank)
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.state = TrainState(**meta["trainer"])
        return True

    # -- the loop ----------------------------------------------------------------------------
    def train_step(self, step: int) -> float:
        x, y, new_epoch = self.batches.get(step)
        if new_epoch:
            self.hidden = None
        lr = lr_at(step, self.cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with autocast(self.device, self.dtype):
            logits, hidden = self.network(x, self.hidden)  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.hidden = detach_hidden(hidden)
        return loss.item()

    def validate(self) -> tuple[float, float]:
        result = evaluate(
            self.model, self.data.val, self.cfg.batch_size, self.cfg.seq_len, self.device, self.dtype
        )
        return result.loss_nats, result.bpc

    def record(self, curve: str, point: TrainPoint | ValPoint, tracker: RunTracker | None) -> None:
        """Add a point to a curve's history (every rank) and to MLflow's pending metrics (rank 0)."""
        self.state.history[curve].append([self.state.step, *dataclasses.astuple(point)])
        if tracker is not None:
            tracker.log(self.state.step, dataclasses.asdict(point))

    def checkpoint(self, tracker: RunTracker | None, curves: dict[str, Path]) -> None:
        """Send pending metrics, rewrite the curve files from the history, save the state."""
        if tracker is not None:
            tracker.flush()
        if self.world.is_main:
            for name, path in curves.items():
                columns = ["step", *(f.name for f in dataclasses.fields(CURVES[name]))]
                io.write_csv(path, columns, self.state.history[name])
        self.save_state()

    def fit(self, tracker: RunTracker | None, best_dir: Path, curves: dict[str, Path]) -> TrainState:
        """Train to max_steps (or early stop); `tracker` is None on every rank but rank 0."""
        cfg, state, world = self.cfg, self.state, self.world
        chars_per_step = self.cfg.batch_size * self.cfg.seq_len
        bar = tqdm(
            total=cfg.max_steps,
            initial=state.step,
            desc=f"train {self.run.name}",
            unit="step",
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
            file=sys.stderr,
            disable=not world.is_main,
        )
        postfix: dict[str, str] = {}
        with stop_signals() as received, bar:
            while state.step < cfg.max_steps and not state.stopped_early:
                started = time.perf_counter()
                local_loss = self.train_step(state.step)
                # One collective per step: the global mean loss, and whether any rank was signalled.
                loss_sum, signalled = world.sum([local_loss, float(len(received))])
                loss = loss_sum / world.size
                stepped = time.perf_counter()
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss} at step {state.step + 1} (try a lower train.learning_rate);"
                        f" the last good checkpoint is kept in {self.checkpoint_dir}"
                    )
                state.train_seconds += stepped - started
                state.step += 1
                state.tokens_seen += chars_per_step
                self.record("train", TrainPoint(loss, lr_at(state.step - 1, cfg)), tracker)
                postfix.update(loss=f"{loss:.3f}", chars_s=f"{state.tokens_seen / state.train_seconds:,.0f}")
                if state.step % cfg.eval_interval == 0 or state.step == cfg.max_steps:
                    # Rank 0 validates; the others take its result, so all make the same decisions.
                    val_loss, val_bpc = world.broadcast(
                        list(self.validate()) if world.is_main else [0.0, 0.0]
                    )
                    self.record("val", ValPoint(val_loss, val_bpc), tracker)
                    postfix["val_bpc"] = f"{val_bpc:.3f}"
                    if val_loss < state.best_val_loss:
                        state.best_val_loss, state.best_step, state.bad_evals = val_loss, state.step, 0
                        if world.is_main:
                            self.export(best_dir)
                    else:
                        state.bad_evals += 1
                        state.stopped_early = cfg.patience > 0 and state.bad_evals >= cfg.patience
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
                state.wall_seconds += time.perf_counter() - started
                if state.step % cfg.checkpoint_interval == 0 or signalled:
                    self.checkpoint(tracker, curves)
                if signalled:
                    raise TrainingInterrupted(received[0] if received else signal.SIGTERM)
        state.finished = True
        self.checkpoint(tracker, curves)
        return state

    def export(self, directory: Path) -> None:
        loss, step = self.state.best_val_loss, self.state.step
        metrics = {"val_loss_nats": loss, "val_bpc": loss / math.log(2)}
        info = {"name": self.run.name, "step": step, "metrics": metrics, "mlflow_run_id": self.state.run_id}
        checkpoint.save_model_dir(directory, self.model, self.data.vocab, info)

    def summary(self) -> dict[str, float]:
        s = self.state
        return {
            "best_val_loss_nats": s.best_val_loss,
            "best_val_bpc": s.best_val_loss / math.log(2),
            "best_step": s.best_step,
            "steps": s.step,
            "tokens_seen": s.tokens_seen,
            "wall_time_s": round(s.wall_seconds, 3),
            "train_chars_per_sec": s.tokens_seen / max(s.train_seconds, 1e-9),
            "num_params": self.model.num_parameters(),
            "stopped_early": int(s.stopped_early),
        }
