"""Around the training loop, what the train stage does: one trainer per checkpoint directory, the
model's MLflow run (created, or resumed with its checkpoint), the exported model, metrics and curves.
"""

import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charlm.errors import CharlmError, LockedError
from charlm.files import file_lock, replace_dir
from charlm.params import ModelRun
from charlm.tracking.runs import RunTracker, end_orphaned_runs, ending
from charlm.training.distributed import SINGLE, World
from charlm.training.outputs import TrainOutputs, TrainSummary
from charlm.training.trainer import TrainData, Trainer

if TYPE_CHECKING:
    from mlflow import MlflowClient

BEST_DIR = "best"  # in the checkpoint directory: the best model so far, exported at the end
RESUME_STEP = "the step to resume from (every node needs the same checkpoint directory)"


@contextmanager
def exclusive_checkpoints(checkpoint_dir: Path, name: str) -> Iterator[None]:
    """Only one process at a time trains into a checkpoint directory.

    A second one (say, a new `dvc repro` while a trainer orphaned by a killed `dvc repro` still
    runs) refuses to start, naming the live process.
    """
    try:
        with file_lock(checkpoint_dir.parent / f".{checkpoint_dir.name}.lock", wait=False):
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
    client: "MlflowClient | None",
    experiment: str,
    params: dict[str, Any],
    tags: dict[str, str],
    world: World = SINGLE,
) -> TrainSummary:
    """Train (or resume) one model with its MLflow run; write the model, metrics and curves.

    `client` is None on ranks other than 0, which neither track nor write outputs.
    """
    # Rank 0 owns the checkpoints, the outputs and the MLflow run; other ranks only train.
    lock = exclusive_checkpoints(out.checkpoint_dir, run.name) if world.is_main else nullcontext()
    with lock:
        trainer = Trainer(run, seed, data, out.checkpoint_dir, world)
        best_dir = out.checkpoint_dir / BEST_DIR
        resumed = trainer.load_state()
        world.agree(trainer.progress.step, RESUME_STEP)
        if not world.is_main:
            trainer.fit(None, best_dir, out.curves)
            return trainer.summary()
        assert client is not None, "rank 0 tracks the run"
        for run_id in end_orphaned_runs(client, experiment):
            print(
                f"train: MLflow run {run_id} was left RUNNING by a dead process; marked KILLED",
                file=sys.stderr,
            )
        if resumed:
            print(f"train: resuming {run.name} from step {trainer.progress.step}", file=sys.stderr)
            tracker = RunTracker.resume(client, trainer.progress.run_id)
        else:
            shutil.rmtree(best_dir, ignore_errors=True)
            tracker = RunTracker.start(client, experiment, run.name, params, tags)
            trainer.progress.run_id = tracker.run_id
        with ending(client, tracker.run_id):
            trainer.fit(tracker, best_dir, out.curves)
            with replace_dir(out.model_dir) as staging:
                shutil.copytree(best_dir, staging, dirs_exist_ok=True)
            summary = trainer.summary()
            summary.write(out.metrics)
            tracker.finish(summary.model_dump(), [out.metrics, out.train_curve, out.val_curve])
        return summary
