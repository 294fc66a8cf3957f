"""One model's training job, as the train stage runs it: the checkpoint directory held by one
process, the model's MLflow run (created, or resumed with its checkpoint), signals turned into a
checkpoint, progress on stderr, and the exported model, summary and curves."""

import os
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charlm.errors import CharlmError, LockedError
from charlm.files import file_lock
from charlm.model import heads
from charlm.params.base import flatten
from charlm.params.training import ModelSpec
from charlm.progress import step_bar
from charlm.tracking import tags as tag
from charlm.tracking.runs import (
    DatasetRef,
    RunTracker,
    StageTracking,
    end_orphaned_runs,
    system_metrics,
)
from charlm.training.distributed import SINGLE, World
from charlm.training.outputs import TrainOutputs, TrainSummary
from charlm.training.state import STATE_FILE, TrainData, TrainingState, fingerprint, read_state
from charlm.training.trainer import Trainer

BEST_DIR = "best"  # in the checkpoint directory: the best model so far, exported at the end
RESUME_STEP = "the step to resume from (every node needs the same checkpoint directory)"


@dataclass(frozen=True)
class TrainJob:
    spec: ModelSpec
    data: TrainData
    outputs: TrainOutputs
    datasets: list[DatasetRef]  # the splits it trains and validates on, for the run's Datasets
    corpus: str  # as people name it

    def description(self, world: World) -> str:
        m, t, data = self.spec.arch, self.spec.train, self.data
        ranks = f" on {world.size} processes" if world.size > 1 else ""
        averaged = f", the weights of its last {t.average_last:.0%} averaged" if t.average_last else ""
        return "\n\n".join(
            [
                f"**{self.spec.name}**: {m.describe()}; {heads.describe(m.head_cutoffs, len(data.vocab))}.",
                f"**Recipe**: {t.max_steps:,} steps of {t.batch_size} x {t.seq_len} characters{ranks};"
                f" AdamW at {t.learning_rate:g} (warmup {t.warmup_steps}, cosine to {t.min_lr_ratio:g}x),"
                f" betas {t.beta1:g}/{t.beta2:g}, weight decay {t.weight_decay:g}, clip {t.grad_clip:g};"
                f" precision {t.precision}, seed {t.seed}{averaged}.",
                f"**Data**: {self.corpus}; trained on {len(data.train):,} characters, validated on"
                f" {len(data.val):,} (the datasets below, by the sha256 of their encoded files).",
            ]
        )

    def run_params(self, world: World) -> dict[str, Any]:
        """Its MLflow params: the model's settings by section, and what else shapes the weights."""
        extra = {"arch.vocab_size": len(self.data.vocab), "distributed.world_size": world.size}
        return flatten(self.spec.model_dump(exclude={"name"})) | extra

    def run_tags(self) -> dict[str, str]:
        data = {tag.split_sha256(split): sha for split, sha in self.data.sha256.items()}
        return {tag.VOCAB_SHA256: self.data.vocab.sha256, **data}


@contextmanager
def exclusive_checkpoints(checkpoint_dir: Path, name: str) -> Iterator[None]:
    """Only one process at a time trains into a checkpoint directory: a second one (say, a new `dvc repro`
    while a trainer orphaned by a killed `dvc repro` still runs) refuses to start, naming the live process."""
    try:
        with file_lock(checkpoint_dir.parent / f".{checkpoint_dir.name}.lock", wait=False):
            yield
    except LockedError as err:
        raise CharlmError(
            f"{checkpoint_dir} is in use by training process {err.pid}; wait for it to finish"
            f" or stop it (kill {err.pid}) before training {name} again"
        ) from None


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


def train_model(job: TrainJob, tracking: StageTracking | None, world: World = SINGLE) -> TrainSummary:
    """Train (or resume) one model; rank 0 tracks it with `tracking` and writes the model, summary
    and curves, the other ranks (`tracking` None) only train."""
    out = job.outputs
    lock = exclusive_checkpoints(out.checkpoint_dir, job.spec.name) if world.is_main else nullcontext()
    with lock:
        state = _resumable(job, world)
        best_dir = out.checkpoint_dir / BEST_DIR
        if state is None and world.is_main:
            shutil.rmtree(best_dir, ignore_errors=True)  # a fresh start's best model is its own
        tracked = nullcontext() if tracking is None else _tracked(job, tracking, state, world)
        # From the run's creation on, an error ends it FAILED and Ctrl-C KILLED, never RUNNING.
        with tracked as tracker:
            # Every node's first process logs its machine's system metrics to the run: on other
            # nodes when they reach the tracking server too (MLFLOW_TRACKING_URI), under its name.
            run_id = world.broadcast_text(tracker.run_id if tracker else "")
            monitored = world.is_main or (world.local_rank == 0 and "MLFLOW_TRACKING_URI" in os.environ)
            trainer = Trainer(job.spec, job.data, out.checkpoint_dir, run_id, world, state)
            bar = step_bar(
                f"train {job.spec.name}", trainer.cfg.max_steps, trainer.loop.steps, not world.is_main
            )
            with (
                system_metrics(run_id, world.node_label) if monitored else nullcontext(),
                stop_signals() as received,
                bar as on_step,
            ):
                trainer.fit(tracker, best_dir, received, on_step)
            summary = trainer.summary()
            if tracker is not None:  # the best model, the summary and the curves, for later stages
                out.write_all(best_dir, summary, trainer.loop.history)
                tracker.finish(summary.model_dump(), [out.metrics, out.train_curve, out.val_curve])
        return summary


def _resumable(job: TrainJob, world: World) -> TrainingState | None:
    """The checkpoint to resume from, if it continues this job; every rank agrees on its step."""
    path = job.outputs.checkpoint_dir / STATE_FILE
    state = read_state(path)
    if state is not None and not state.continues(fingerprint(job.spec, job.data)):
        if world.is_main:
            why = "finished" if state.loop.finished else "made with other params, data or version"
            print(f"train: {path} was {why}; training from scratch", file=sys.stderr)
        state = None
    world.agree(state.loop.steps if state else 0, RESUME_STEP)
    return state


@contextmanager
def _tracked(
    job: TrainJob, tracking: StageTracking, state: TrainingState | None, world: World
) -> Iterator[RunTracker]:
    """The job's MLflow run, ended as the block ends: the checkpoint's, resumed, or a new one with
    its params, tags, description and datasets."""
    for run_id in end_orphaned_runs(tracking.client, tracking.experiment):
        print(
            f"train: MLflow run {run_id} was left RUNNING by a dead process; marked KILLED", file=sys.stderr
        )
    if state is not None:
        print(f"train: resuming {job.spec.name} from step {state.loop.steps}", file=sys.stderr)
        with RunTracker.resume(tracking.client, state.run_id) as tracker:
            yield tracker
        return
    tags, params = job.run_tags() | {tag.DESCRIPTION: job.description(world)}, job.run_params(world)
    with RunTracker.start(tracking, job.spec.name, params, tags) as tracker:
        tracking.log_datasets(tracker.run_id, job.datasets)
        yield tracker
