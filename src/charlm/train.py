"""The training loop: stateful truncated BPTT with AdamW, warmup + cosine, clipping, early stopping.

The training split is laid out as B parallel streams; step s reads the chunk of T characters at
offset `(s mod steps_per_epoch) * T` of every stream, so the data position is a pure function of
the step. The hidden state is carried (detached) from chunk to chunk and reset at each epoch.

Everything needed to continue (weights, optimizer moments, the hidden state, RNG states, the
step, best-so-far and the metric history) is checkpointed atomically every `checkpoint_interval`
steps; a rerun with the same configuration resumes from it and, on CPU, ends with bit-identical
weights to an uninterrupted run.

Under torchrun (`charlm.distributed`) each rank trains on its share of the streams inside DDP;
checkpoints always hold the whole batch's hidden state, so a run can resume on another number of
processes.
"""

import dataclasses
import hashlib
import json
import math
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from charlm import checkpoint, io
from charlm.device import autocast, autocast_dtype, select_device
from charlm.distributed import SINGLE, World
from charlm.errors import CharlmError, DataError, LockedError
from charlm.evaluation import evaluate, streams
from charlm.model import CharLM, Hidden, detach_hidden, hidden_from_tensors, hidden_tensors
from charlm.params import ModelRun, TrainConfig
from charlm.tracking import RunTracker, end_orphaned_runs
from charlm.vocab import Vocabulary

STATE_FILE = "state.safetensors"
BEST_DIR = "best"


class TrainingDiverged(CharlmError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(CharlmError):
    """SIGINT/SIGTERM arrived; a checkpoint was written first."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}; checkpoint saved, rerun to resume")
        self.exit_code = 128 + signum


@dataclass(frozen=True)
class TrainData:
    train: np.ndarray
    val: np.ndarray
    vocab: Vocabulary


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to learning_rate, then cosine decay to learning_rate * min_lr_ratio."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(cfg.max_steps - cfg.warmup_steps, 1)
    floor = cfg.learning_rate * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.learning_rate - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


class Batches:
    """Chunks of B parallel streams for stateful truncated BPTT; all on the training device.

    `rows` picks this process's share of the streams (all of them outside data-parallel runs).
    """

    def __init__(
        self, ids: np.ndarray, batch_size: int, seq_len: int, device: torch.device, rows: slice = slice(None)
    ):
        self.data = streams(ids, batch_size, device)[rows]  # (B / world size, L)
        self.seq_len = seq_len
        self.steps_per_epoch = (self.data.size(1) - 1) // seq_len
        if self.steps_per_epoch < 1:
            raise DataError(
                f"the training split ({len(ids)} chars) is too short for train.batch_size={batch_size}"
                f" streams of train.seq_len + 1 = {seq_len + 1} characters"
            )

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(inputs (B, T), targets (B, T), whether this chunk starts a new epoch)."""
        chunk = step % self.steps_per_epoch
        start = chunk * self.seq_len
        x = self.data[:, start : start + self.seq_len]
        y = self.data[:, start + 1 : start + self.seq_len + 1]
        return x, y, chunk == 0


def make_optimizer(model: CharLM, cfg: TrainConfig) -> torch.optim.AdamW:
    # Decay matrices only; biases do not benefit from weight decay.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.99))


def data_hash(data: TrainData) -> str:
    digest = hashlib.sha256(data.train.tobytes())
    digest.update(data.val.tobytes())
    return digest.hexdigest()


def fingerprint(run: ModelRun, seed: int, data: TrainData) -> str:
    """Identifies what a checkpoint was trained on; a mismatch means start afresh, not resume."""
    setup = [dataclasses.asdict(run), seed, data.vocab.hash, data_hash(data)]
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
    def save_state(self, tracker: RunTracker | None) -> None:
        """Write the resumable state (rank 0 writes; every rank must call, to share its part)."""
        # The whole batch's hidden state and every rank's RNG, so any process count can resume.
        hidden = []
        if self.hidden is not None:
            hidden = [torch.cat(self.world.gather(t), dim=1) for t in hidden_tensors(self.hidden)]
        rngs = self.world.gather(torch.get_rng_state())
        if tracker is None:  # not rank 0: its part is shared, rank 0 writes
            return
        tensors = {f"model.{k}": v for k, v in checkpoint.parameters(self.model).items()}
        opt = self.optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, pstate in opt["state"].items():
            for key, value in pstate.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{pid}.{key}"] = value.detach().cpu()
                else:
                    scalars.setdefault(str(pid), {})[key] = value
        for i, t in enumerate(hidden):
            tensors[f"hidden.{i}"] = t.detach().cpu()  # (layers, B, H)
        tensors["rng.cpu"] = rngs[0]
        for rank, rng in enumerate(rngs[1:], start=1):
            tensors[f"rng.cpu.{rank}"] = rng
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        meta = {
            "format": checkpoint.STATE_FORMAT,
            "fingerprint": self.fingerprint,
            "trainer": dataclasses.asdict(self.state),
            "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
            "tracker": tracker.state(),
        }
        checkpoint.save_tensors(self.checkpoint_dir / STATE_FILE, tensors, meta)

    def load_state(self) -> dict[str, Any] | None:
        """Restore a resumable checkpoint; returns its tracker state, or None to start afresh."""
        path = self.checkpoint_dir / STATE_FILE
        if not path.exists():
            return None
        tensors, meta = checkpoint.load_tensors(path)
        if meta.get("format") != checkpoint.STATE_FORMAT:
            raise DataError(f"{path}: not a charlm training state")
        if meta["fingerprint"] != self.fingerprint or meta["trainer"]["finished"]:
            reason = "finished" if meta["trainer"]["finished"] else "made with other params or data"
            if self.world.is_main:
                print(f"train: {path} was {reason}; training from scratch", file=sys.stderr)
            return None
        model_tensors = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        checkpoint.load_parameters(self.model, model_tensors, str(path))
        opt_state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                opt_state.setdefault(int(pid), {})[name] = value.to(self.device) if name != "step" else value
        for pid, values in meta["optimizer"]["scalars"].items():
            opt_state.setdefault(int(pid), {}).update(values)
        self.optimizer.load_state_dict(
            {"state": opt_state, "param_groups": meta["optimizer"]["param_groups"]}
        )
        hidden = [
            tensors[f"hidden.{i}"][:, self.rows].to(self.device) for i in range(2) if f"hidden.{i}" in tensors
        ]
        self.hidden = hidden_from_tensors(hidden) if hidden else None
        rng = "rng.cpu" if self.world.rank == 0 else f"rng.cpu.{self.world.rank}"
        if rng in tensors:
            torch.set_rng_state(tensors[rng])
        else:  # saved by fewer processes than resume it
            torch.manual_seed(self.seed + self.world.rank)
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.state = TrainState(**meta["trainer"])
        return meta["tracker"]

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

    def fit(self, tracker: RunTracker | None, best_dir: Path) -> TrainState:
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
                if tracker:
                    tracker.log(state.step, {"train_loss_nats": loss, "lr": lr_at(state.step - 1, cfg)})
                postfix.update(loss=f"{loss:.3f}", chars_s=f"{state.tokens_seen / state.train_seconds:,.0f}")
                if state.step % cfg.eval_interval == 0 or state.step == cfg.max_steps:
                    # Rank 0 validates; the others take its result, so all make the same decisions.
                    val_loss, val_bpc = world.broadcast(
                        list(self.validate()) if world.is_main else [0.0, 0.0]
                    )
                    if tracker:
                        tracker.log(state.step, {"val_loss_nats": val_loss, "val_bpc": val_bpc})
                    postfix["val_bpc"] = f"{val_bpc:.3f}"
                    if val_loss < state.best_val_loss:
                        state.best_val_loss, state.best_step, state.bad_evals = val_loss, state.step, 0
                        if tracker:  # rank 0
                            self.export(best_dir, tracker.run_id)
                    else:
                        state.bad_evals += 1
                        state.stopped_early = cfg.patience > 0 and state.bad_evals >= cfg.patience
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
                state.wall_seconds += time.perf_counter() - started
                if state.step % cfg.checkpoint_interval == 0 or signalled:
                    if tracker:
                        tracker.flush()
                    self.save_state(tracker)
                if signalled:
                    raise TrainingInterrupted(received[0] if received else signal.SIGTERM)
        state.finished = True
        if tracker:
            tracker.flush()
        self.save_state(tracker)
        return state

    def export(self, directory: Path, run_id: str) -> None:
        metrics = {
            "val_loss_nats": self.state.best_val_loss,
            "val_bpc": self.state.best_val_loss / math.log(2),
        }
        info = {"name": self.run.name, "step": self.state.step, "metrics": metrics, "mlflow_run_id": run_id}
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


@dataclass(frozen=True)
class TrainOutputs:
    model_dir: Path  # the best-by-validation model, exported for evaluation and serving
    checkpoint_dir: Path  # resumable state (persisted across DVC runs)
    metrics: Path  # DVC metrics JSON
    train_curve: Path  # DVC plots CSV: step, train_loss_nats, lr
    val_curve: Path  # DVC plots CSV: step, val_loss_nats, val_bpc


RESUME_STEP = "the step to resume from (every node needs the same checkpoint directory)"


@contextmanager
def exclusive_checkpoints(checkpoint_dir: Path, name: str) -> Iterator[None]:
    """Only one process at a time trains into a checkpoint directory.

    A second one (say, a new `dvc repro` while a trainer orphaned by a killed `dvc repro` still
    runs) refuses to start, naming the live process.
    """
    try:
        with io.file_lock(checkpoint_dir.parent / f".{checkpoint_dir.name}.lock", wait=False):
            yield
    except LockedError as err:
        raise CharlmError(
            f"{checkpoint_dir} is in use by training process {err.holder}; wait for it to finish"
            f" or stop it (kill {err.holder}) before training {name} again"
        ) from None


def run_training(
    run: ModelRun,
    seed: int,
    data: TrainData,
    out: TrainOutputs,
    client: Any,
    experiment: str,
    params: dict[str, Any],
    tags: dict[str, str],
    world: World = SINGLE,
) -> dict[str, float]:
    """Train (or resume) one model with its MLflow run; write the model, metrics and curves.

    `client` may be None on ranks other than 0, which neither track nor write outputs.
    """
    # Rank 0 owns the checkpoints, the outputs and the MLflow run; other ranks only train.
    lock = exclusive_checkpoints(out.checkpoint_dir, run.name) if world.is_main else nullcontext()
    with lock:
        trainer = Trainer(run, seed, data, out.checkpoint_dir, world)
        best_dir = out.checkpoint_dir / BEST_DIR
        if not world.is_main:
            trainer.load_state()
            world.agree(trainer.state.step, RESUME_STEP)
            trainer.fit(None, best_dir)
            return trainer.summary()
        curves = {out.train_curve: ["train_loss_nats", "lr"], out.val_curve: ["val_loss_nats", "val_bpc"]}
        for run_id in end_orphaned_runs(client, experiment):
            print(
                f"train: MLflow run {run_id} was left RUNNING by a dead process; marked KILLED",
                file=sys.stderr,
            )
        resumed = trainer.load_state()
        world.agree(trainer.state.step, RESUME_STEP)
        if resumed is not None:
            print(f"train: resuming {run.name} from step {trainer.state.step}", file=sys.stderr)
            tracker = RunTracker.resume(client, resumed, curves)
        else:
            shutil.rmtree(best_dir, ignore_errors=True)
            tracker = RunTracker.start(client, experiment, run.name, params, tags, curves)
        try:
            trainer.fit(tracker, best_dir)
        except TrainingInterrupted:
            tracker.end("KILLED")
            raise
        except BaseException:
            tracker.end("FAILED")
            raise
        with io.replace_dir(out.model_dir) as staging:
            shutil.copytree(best_dir, staging, dirs_exist_ok=True)
        summary = trainer.summary()
        tracker.finish(summary, out.metrics)
        return summary
