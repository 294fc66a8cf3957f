"""The training loop: stateful truncated BPTT over B parallel streams (`charlm.data.streams`), the
hidden state carried (detached) from chunk to chunk and reset at each epoch; early stopping on
validation.

Everything needed to continue is checkpointed atomically every `checkpoint_interval` steps
(`charlm.training.state`); a rerun resumes from it and, on CPU, ends with weights bit-identical to
an uninterrupted run. Under torchrun each rank trains on its share of the streams inside DDP;
checkpoints hold the whole batch's hidden state, so a run resumes on any number of processes.
Rank 0 alone validates, exports, writes files and logs metrics.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from charlm.data.encoded import EncodedSplits
from charlm.data.streams import Batches
from charlm.data.vocab import Vocabulary
from charlm.errors import CharlmError, TrainingInterrupted
from charlm.evaluation.evaluate import evaluate
from charlm.evaluation.metrics import bits_per_char
from charlm.files import write_csv
from charlm.model.device import autocast, autocast_dtype, select_device
from charlm.model.directory import save_model_dir
from charlm.model.network import CharLM, Hidden, detach_hidden, hidden_from_tensors, hidden_tensors
from charlm.params import ModelRun
from charlm.progress import progress_bar
from charlm.training.distributed import SINGLE, World
from charlm.training.outputs import CURVES, TrainPoint, TrainSummary, ValPoint
from charlm.training.recipe import lr_at, make_optimizer
from charlm.training.state import STATE_FILE, STATE_FORMAT, Progress, TrainingState, read_state, save_state


class TrainingDiverged(CharlmError):
    """The loss became NaN or infinite."""


class MetricLog(Protocol):
    """Where rank 0 sends each logged point (the model's MLflow run); `flush` at every checkpoint."""

    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def flush(self) -> None: ...


@dataclass(frozen=True)
class TrainData:
    train: np.ndarray
    val: np.ndarray
    vocab: Vocabulary
    sha256: dict[str, str]  # of the train and val splits (`charlm.data.encoded`)

    @classmethod
    def load(cls, encoded: EncodedSplits, vocab: Vocabulary) -> "TrainData":
        hashes = {split: encoded.sha256(split) for split in ("train", "val")}
        return cls(encoded.load("train"), encoded.load("val"), vocab, hashes)


def fingerprint(run: ModelRun, seed: int, data: TrainData) -> str:
    """Identifies what a checkpoint was trained on, and in which state format; a mismatch means
    start afresh, not resume."""
    setup = [run.model_dump(), seed, data.vocab.hash, data.sha256, STATE_FORMAT]
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
        self.model = CharLM(run.model, len(data.vocab)).to(self.device)
        self.network: torch.nn.Module = self.model
        if world.size > 1:
            # DDP broadcasts rank 0's weights and averages gradients during backward.
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = DistributedDataParallel(self.model, device_ids=ids)
            torch.manual_seed(seed + world.rank)  # distinct dropout masks per rank
        self.optimizer = make_optimizer(self.model, self.cfg)
        self.rows = world.shard(self.cfg.batch_size)
        self.batches = Batches(data.train, self.cfg.batch_size, self.cfg.seq_len, self.device, self.rows)
        self.progress = Progress()
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
        cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        state = TrainingState(self.fingerprint, self.progress, hidden, rngs, cuda_rng)
        save_state(self.checkpoint_dir / STATE_FILE, state, self.model, self.optimizer)

    def load_state(self) -> bool:
        """Restore a resumable checkpoint; False: there is none to resume, training starts afresh."""
        path = self.checkpoint_dir / STATE_FILE
        state = read_state(path)
        if state is None or state.fingerprint != self.fingerprint or state.progress.finished:
            if path.exists() and self.world.is_main:
                reason = (
                    "finished"
                    if state and state.progress.finished
                    else "made with other params, data or version"
                )
                print(f"train: {path} was {reason}; training from scratch", file=sys.stderr)
            return False
        state.restore(self.model, self.optimizer, path)
        hidden = [h[:, self.rows].to(self.device) for h in state.hidden]  # this rank's streams
        self.hidden = hidden_from_tensors(hidden) if hidden else None
        if self.world.rank < len(state.rngs):
            torch.set_rng_state(state.rngs[self.world.rank])
        else:  # saved by fewer processes than resume it
            torch.manual_seed(self.seed + self.world.rank)
        if state.cuda_rng is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state.cuda_rng, self.device)
        self.progress = state.progress
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

    def record(self, curve: str, point: TrainPoint | ValPoint, log: MetricLog | None) -> None:
        """Add a point to a curve's history (every rank) and to the pending metrics (rank 0)."""
        self.progress.history[curve].append([self.progress.step, *dataclasses.astuple(point)])
        if log is not None:
            log.log(self.progress.step, dataclasses.asdict(point))

    def checkpoint(self, log: MetricLog | None, curves: dict[str, Path]) -> None:
        """Send pending metrics, rewrite the curve files from the history, save the state."""
        if log is not None:
            log.flush()
        if self.world.is_main:
            for name, path in curves.items():
                columns = ["step", *(f.name for f in dataclasses.fields(CURVES[name]))]
                write_csv(path, columns, self.progress.history[name])
        self.save_state()

    def fit(self, log: MetricLog | None, best_dir: Path, curves: dict[str, Path]) -> Progress:
        """Train to max_steps (or early stop); `log` is None on every rank but rank 0."""
        cfg, progress, world = self.cfg, self.progress, self.world
        chars_per_step = self.cfg.batch_size * self.cfg.seq_len
        bar = progress_bar(
            cfg.max_steps, f"train {self.run.name}", "step", initial=progress.step, disable=not world.is_main
        )
        postfix: dict[str, str] = {}
        with stop_signals() as received, bar:
            while progress.step < cfg.max_steps and not progress.stopped_early:
                started = time.perf_counter()
                local_loss = self.train_step(progress.step)
                # One collective per step: the global mean loss, and whether any rank was signalled.
                loss_sum, signalled = world.sum([local_loss, float(len(received))])
                loss = loss_sum / world.size
                stepped = time.perf_counter()
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss} at step {progress.step + 1} (try a lower train.learning_rate);"
                        f" the last good checkpoint is kept in {self.checkpoint_dir}"
                    )
                progress.train_seconds += stepped - started
                progress.step += 1
                progress.train_chars += chars_per_step
                self.record("train", TrainPoint(loss, lr_at(progress.step - 1, cfg)), log)
                chars_per_sec = progress.train_chars / progress.train_seconds
                postfix.update(loss=f"{loss:.3f}", chars_s=f"{chars_per_sec:,.0f}")
                if progress.step % cfg.eval_interval == 0 or progress.step == cfg.max_steps:
                    # Rank 0 validates; the others take its result, so all make the same decisions.
                    val_loss, val_bpc = world.broadcast(
                        list(self.validate()) if world.is_main else [0.0, 0.0]
                    )
                    self.record("val", ValPoint(val_loss, val_bpc), log)
                    postfix["val_bpc"] = f"{val_bpc:.3f}"
                    if val_loss < progress.best_val_loss:
                        progress.best_val_loss, progress.best_step, progress.bad_evals = (
                            val_loss,
                            progress.step,
                            0,
                        )
                        if world.is_main:
                            self.export(best_dir)
                    else:
                        progress.bad_evals += 1
                        progress.stopped_early = cfg.patience > 0 and progress.bad_evals >= cfg.patience
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
                progress.wall_seconds += time.perf_counter() - started
                if progress.step % cfg.checkpoint_interval == 0 or signalled:
                    self.checkpoint(log, curves)
                if signalled:
                    raise TrainingInterrupted(received[0] if received else signal.SIGTERM)
        progress.finished = True
        self.checkpoint(log, curves)
        return progress

    def export(self, directory: Path) -> None:
        p = self.progress
        save_model_dir(
            directory,
            self.model,
            self.data.vocab,
            self.run.name,
            step=p.step,
            val_bpc=bits_per_char(p.best_val_loss),
            mlflow_run_id=p.run_id or None,
        )

    def summary(self) -> TrainSummary:
        p = self.progress
        return TrainSummary(
            best_val_loss_nats=p.best_val_loss,
            best_val_bpc=bits_per_char(p.best_val_loss),
            best_step=p.best_step,
            steps=p.step,
            train_chars=p.train_chars,
            wall_time_s=round(p.wall_seconds, 3),
            train_chars_per_sec=p.train_chars / max(p.train_seconds, 1e-9),
            num_params=self.model.num_parameters(),
            stopped_early=int(p.stopped_early),
        )
