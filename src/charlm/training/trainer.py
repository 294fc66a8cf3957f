"""The training loop: stateful truncated BPTT over B parallel streams (`charlm.data.streams`), the hidden
state carried (detached) from chunk to chunk and reset at each epoch; early stopping on validation. Everything
needed to continue is checkpointed atomically every `checkpoint_interval` steps (`charlm.training.state`); a
trainer restored from it ends, on CPU, with weights bit-identical to an uninterrupted run. Under torchrun each
rank trains on its share of the streams inside DDP; checkpoints hold the whole batch's hidden state, so a run
resumes on any number of processes. Rank 0 alone validates, exports and logs metrics."""

import dataclasses
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import torch
from torch.nn.parallel import DistributedDataParallel

from charlm.data.streams import Batches
from charlm.errors import CharlmError, TrainingInterrupted
from charlm.evaluation.evaluate import evaluate
from charlm.evaluation.metrics import bits_per_char
from charlm.model.device import autocast, autocast_dtype, precision_name, processor, select_device
from charlm.model.directory import save_model_dir
from charlm.model.network import CharLM, Hidden, detach_hidden, hidden_from_tensors, hidden_tensors
from charlm.params.training import ModelSpec
from charlm.training.distributed import SINGLE, World
from charlm.training.outputs import TrainPoint, TrainSummary, ValPoint
from charlm.training.recipe import in_average, lr_at, make_optimizer
from charlm.training.state import STATE_FILE, LoopState, TrainData, TrainingState, fingerprint, save_state

# Called after every step with the step's loss, the training speed so far and, after an
# evaluation, its validation bpc: how the loop shows its progress.
OnStep = Callable[[float, float, float | None], None]


class TrainingDiverged(CharlmError):
    """The loss became NaN or infinite."""


class MetricLog(Protocol):
    """Where rank 0 sends each logged point (the model's MLflow run); `flush` at every checkpoint."""

    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def flush(self) -> None: ...


class Trainer:
    # What times the loop (steps, validation, the time budget); tests give it a clock of their own.
    clock = staticmethod(time.perf_counter)

    def __init__(
        self,
        spec: ModelSpec,
        data: TrainData,
        checkpoint_dir: Path,
        run_id: str = "",
        world: World = SINGLE,
        state: TrainingState | None = None,
    ) -> None:
        """`run_id`: the MLflow run its steps are logged to, kept in its checkpoints and models;
        `state`: a checkpoint that `continues` this training, to resume from (the job decides)."""
        self.spec, self.cfg, self.data, self.world = spec, spec.train, data, world
        self.device = select_device(self.cfg.device)
        if self.device.type == "cuda" and world.size > 1:
            self.device = torch.device("cuda", world.local_rank)
        self.dtype = autocast_dtype(self.cfg.precision, self.device)
        self.checkpoint_dir, self.seed, self.run_id = checkpoint_dir, spec.train.seed, run_id
        self.rows = world.shard(self.cfg.batch_size)
        self.batches = Batches(data.train, self.cfg.batch_size, self.cfg.seq_len, self.device, self.rows)
        torch.manual_seed(self.seed)  # the same initial weights on every rank
        self.net = CharLM(spec.arch, len(data.vocab)).to(self.device)
        self.net.head.start_at(data.vocab.counts)  # the unigram distribution, whatever the input
        self.parallel: torch.nn.Module = self.net  # the net, inside DDP when several processes train
        if world.size > 1:
            # DDP broadcasts rank 0's weights and averages gradients during backward.
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.parallel = DistributedDataParallel(self.net, device_ids=ids)
            torch.manual_seed(self.seed + world.rank)  # distinct dropout masks per rank
        self.optimizer = make_optimizer(self.net, self.cfg)
        self.loop = LoopState()
        # The share of the time budget rank 0 had spent at the last step: every rank's schedule reads it.
        self.time_spent = 0.0
        self.lr = 0.0  # the last step's learning rate
        self.hidden: Hidden | None = None
        self.average: list[torch.Tensor] = []  # the weights' running mean, once averaging has begun
        if state is not None:
            self._restore(state)

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
        setup = fingerprint(self.spec, self.data)
        state = TrainingState(setup, self.run_id, self.loop, hidden, rngs, cuda_rng, self.average)
        save_state(self.checkpoint_dir / STATE_FILE, state, self.net, self.optimizer)

    def _restore(self, state: TrainingState) -> None:
        self.loop = state.loop
        self.time_spent = self.share_of_budget(state.loop.wall_time_s)  # rank 0's, which every rank restores
        state.restore(self.net, self.optimizer, self.checkpoint_dir / STATE_FILE)
        hidden = [h[:, self.rows].to(self.device) for h in state.hidden]  # this rank's streams
        self.hidden = hidden_from_tensors(hidden) if hidden else None
        if self.world.rank < len(state.rngs):
            torch.set_rng_state(state.rngs[self.world.rank])
        else:  # saved by fewer processes than resume it
            torch.manual_seed(self.seed + self.world.rank)
        if state.cuda_rng is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state.cuda_rng, self.device)
        self.average = [a.to(self.device) for a in state.average]

    # -- the loop ----------------------------------------------------------------------------
    def train_step(self, step: int) -> float:
        x, y, new_epoch = self.batches.get(step)
        if new_epoch:
            self.hidden = None
        self.lr = lr_at(step, self.cfg, self.time_spent)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
        with autocast(self.device, self.dtype):
            loss, hidden = self.parallel(x, self.hidden, y)  # the mean over the (B, T) targets
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.hidden = detach_hidden(hidden)
        if in_average(step, self.cfg, self.time_spent):
            self._average()
        return loss.item()

    @torch.no_grad()
    def _average(self) -> None:
        weights = [p.detach() for p in self.net.parameters()]
        self.loop.averaged_steps += 1
        if self.loop.averaged_steps == 1:
            self.average = [w.clone() for w in weights]
        else:  # the mean of n weights from the mean of n - 1: a step of 1/n toward the newest
            torch._foreach_lerp_(self.average, weights, 1.0 / self.loop.averaged_steps)

    @contextmanager
    def holding_average(self) -> Iterator[None]:
        """Within, the model holds the averaged weights (once averaging has begun): what validation
        scores and export writes."""
        if not self.average:
            yield
            return
        weights = list(self.net.parameters())
        trained = [w.detach().clone() for w in weights]
        with torch.no_grad():
            torch._foreach_copy_(weights, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(weights, trained)

    def validate(self) -> tuple[float, float]:
        with self.holding_average():
            result = evaluate(
                self.net, self.data.val, self.cfg.batch_size, self.cfg.seq_len, self.device, self.dtype
            )
        return result.loss_nats, result.bpc

    def record(self, curve: str, point: TrainPoint | ValPoint, log: MetricLog | None) -> None:
        """Add a point to a curve's history (every rank) and to the pending metrics (rank 0)."""
        self.loop.history[curve].append([self.loop.steps, *dataclasses.astuple(point)])
        if log is not None:
            log.log(self.loop.steps, dataclasses.asdict(point))

    def checkpoint(self, log: MetricLog | None) -> None:
        """Send pending metrics, then save the state they are consistent with."""
        if log is not None:
            log.flush()
        self.save_state()

    def share_of_budget(self, elapsed_s: float) -> float:
        """How much of `train.max_time_s` is spent after `elapsed_s` of wall time (0 without one),
        the longest validation so far held in reserve for a last one."""
        if self.cfg.max_time_s is None:
            return 0.0
        usable_s = self.cfg.max_time_s - self.loop.validation_s
        return elapsed_s / usable_s if usable_s > 0 else 1.0

    def validated(self, started: float) -> list[float]:
        """Validation loss and bpc, and the share of the budget spent once validated (for rank 0 to
        send: the step `started` then)."""
        validating = self.clock()
        result = self.validate()
        self.loop.validation_s = max(self.loop.validation_s, self.clock() - validating)
        return [*result, self.share_of_budget(self.loop.wall_time_s + self.clock() - started)]

    def fit(self, log: MetricLog | None, best_dir: Path, signals: list[int], on_step: OnStep) -> LoopState:
        """Train to max_steps, early stop or the time budget, exporting each best model to
        `best_dir`; `log` is None on every rank but rank 0. A signal appended to `signals` (SIGINT,
        SIGTERM) stops every rank at the same step, after a checkpoint. With `max_time_s`, the last
        step is the one after which a validation (as long as the longest) would pass the budget."""
        cfg, loop, world = self.cfg, self.loop, self.world
        chars_per_step = cfg.batch_size * cfg.seq_len
        out_of_time = False
        while loop.steps < cfg.max_steps and not loop.stopped_early and not out_of_time:
            started = self.clock()
            local_loss = self.train_step(loop.steps)
            elapsed = loop.wall_time_s + self.clock() - started
            # One collective per step: the global mean loss, whether any rank was signalled, and
            # rank 0's share of the budget spent, which every rank's schedule and stop follow.
            mine = self.share_of_budget(elapsed) if world.is_main else 0.0
            loss_sum, signalled, self.time_spent = world.sum([local_loss, float(len(signals)), mine])
            loss, out_of_time = loss_sum / world.size, self.time_spent >= 1
            stepped = self.clock()
            if not math.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss} at step {loop.steps + 1} (try a lower train.learning_rate);"
                    f" the last good checkpoint is kept in {self.checkpoint_dir}"
                )
            loop.train_time_s += stepped - started
            loop.steps += 1
            loop.train_chars += chars_per_step
            self.record("train", TrainPoint(loss, self.lr), log)
            train_val_bpc = None
            if loop.steps % cfg.eval_interval == 0 or loop.steps == cfg.max_steps or out_of_time:
                # Rank 0 validates; the others take its result, so all make the same decisions.
                train_val_loss, train_val_bpc, self.time_spent = world.broadcast(
                    self.validated(started) if world.is_main else [0.0, 0.0, 0.0]
                )
                self.record("val", ValPoint(train_val_loss, train_val_bpc), log)
                if train_val_loss < loop.best_train_val_loss_nats:
                    loop.best_train_val_loss_nats, loop.best_step = train_val_loss, loop.steps
                    loop.bad_evals = 0
                    if world.is_main:
                        self.export(best_dir)
                else:
                    loop.bad_evals += 1
                    loop.stopped_early = cfg.patience > 0 and loop.bad_evals >= cfg.patience
            on_step(loss, loop.train_chars / loop.train_time_s, train_val_bpc)
            loop.wall_time_s += self.clock() - started
            if loop.steps % cfg.checkpoint_interval == 0 or signalled:
                self.checkpoint(log)
            if signalled:
                raise TrainingInterrupted(signals[0] if signals else signal.SIGTERM)  # another rank's
        loop.finished = True
        self.checkpoint(log)
        return loop

    def export(self, directory: Path) -> None:
        with self.holding_average():
            save_model_dir(directory, self.net, self.data.vocab, self.spec.name, self.run_id or None)

    def summary(self) -> TrainSummary:
        loop = self.loop
        # The loop's counts, by the names the two share; the wall time to the millisecond.
        counts = {k: v for k, v in vars(loop).items() if k in TrainSummary.model_fields}
        counts["wall_time_s"] = round(loop.wall_time_s, 3)
        return TrainSummary(
            **counts,
            name=self.spec.name,
            best_train_val_bpc=bits_per_char(loop.best_train_val_loss_nats),
            train_chars_per_sec=loop.train_chars / max(loop.train_time_s, 1e-9),
            num_params=self.net.num_parameters(),
            device=str(self.device),
            precision=precision_name(self.dtype),
            processor=processor(self.device),
            torch_threads=torch.get_num_threads(),
            torch_version=torch.__version__,
        )
