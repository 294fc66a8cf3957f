"""End to end: interrupted and concurrent runs of the real DVC pipeline's train stage.

The promises: a training process killed at any point resumes to bit-identical weights; a second
repro is refused while one runs, and an orphaned trainer is never raced."""

import signal
import time

import psutil
import pytest
import torch
from safetensors.torch import load_file

from charlm.training.state import read_state
from tests.helpers import Workspace, run, runs_by_name, start, wait_for_file

pytestmark = pytest.mark.slow


def _trainer_process(parent: psutil.Process) -> psutil.Process | None:
    """The Python process running the train stage (not the shell DVC starts it through)."""
    for child in parent.children(recursive=True):
        try:
            if child.name().startswith("python") and "stages/train.py" in child.cmdline():
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def test_a_second_repro_is_refused_and_a_killed_trainer_resumes_bit_exact(lstm_workspace: Workspace) -> None:
    settings = {"max_steps": 400, "checkpoint_interval": 10, "eval_interval": 200}
    # The uninterrupted reference run; a second repro while it trains is refused by DVC's lock.
    reference = lstm_workspace("reference", **settings)
    first = start(["dvc", "repro", "train@lstm"], reference)
    deadline = time.monotonic() + 60
    while _trainer_process(psutil.Process(first.pid)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run(["dvc", "repro", "train@lstm"], reference, check=False)
    assert second.returncode != 0 and "lock" in second.stderr.lower()
    assert first.wait(timeout=120) == 0
    assert "up to date" in run(["dvc", "status", "--with-deps", "train@lstm"], reference).stdout

    # The same run, its trainer killed mid-run, then repro again.
    ws = lstm_workspace("killed", **settings)
    proc = start(["dvc", "repro", "train@lstm"], ws)
    state = ws / "checkpoints/lstm/state.safetensors"
    wait_for_file(state, proc)
    trainer = _trainer_process(psutil.Process(proc.pid))
    assert trainer is not None, "the training process ended before it could be killed"
    trainer.suspend()  # stopped where it is, 390 steps from the end, then killed there
    trainer.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) != 0
    interrupted = read_state(state)
    assert interrupted is not None and not interrupted.loop.finished
    killed_at = interrupted.loop.steps

    resumed = run(["dvc", "repro", "train@lstm"], ws)
    assert f"resuming lstm from step {killed_at}" in resumed.stderr
    a = load_file(reference / "models/lstm/model.safetensors")
    b = load_file(ws / "models/lstm/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert runs_by_name(ws)["lstm"].info.status == "FINISHED"


def test_sigkill_of_dvc_leaves_an_orphan_trainer_that_a_new_repro_will_not_race(
    lstm_workspace: Workspace,
) -> None:
    ws = lstm_workspace(max_steps=5000, checkpoint_interval=20, eval_interval=1000)
    dvc = start(["dvc", "repro", "train@lstm"], ws)
    wait_for_file(ws / "checkpoints/lstm/state.safetensors", dvc)
    orphan = _trainer_process(psutil.Process(dvc.pid))
    assert orphan is not None, "training ended before dvc could be killed"
    dvc.send_signal(signal.SIGKILL)
    dvc.wait(timeout=30)
    try:
        assert orphan.is_running()
        second = run(["dvc", "repro", "train@lstm"], ws, check=False)
        assert second.returncode != 0
        assert f"checkpoints/lstm is in use by training process {orphan.pid}" in second.stderr
        assert orphan.is_running(), "the refused repro must leave the live trainer alone"
    finally:
        orphan.kill()
        orphan.wait(timeout=30)
    # The orphan's last checkpoint is intact, for the next repro to resume from.
    assert read_state(ws / "checkpoints/lstm/state.safetensors").loop.steps > 0  # type: ignore[union-attr]
