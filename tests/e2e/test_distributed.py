"""Data-parallel training for real: two gloo processes under torchrun through `dvc repro`, sharing the
mapped training split, stopped by SIGTERM and resumed, against one process on the same global batch."""

import csv
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import torch

from charlm.model.directory import load_model_dir
from charlm.training.state import read_state
from tests.helpers import run, start, wait_for_file, workspace_store

pytestmark = pytest.mark.slow

Workspace = Callable[..., Path]
# Measured gap between 2-process and 1-process runs (200 and 300 steps): under 1e-6 nats per step
# (only the order of the gradient sums differs); the bound leaves two orders of magnitude.
LOSS_TOLERANCE = 1e-4


def _losses(path: Path) -> list[float]:
    with open(path, newline="") as f:
        return [float(row["train_loss_nats"]) for row in csv.DictReader(f)]


def _set_processes(ws: Path, n: int) -> None:
    params = ws / "params.yaml"
    text = params.read_text()
    params.write_text(text.replace("nproc_per_node: 1\n", f"nproc_per_node: {n}\n"))


def test_two_gloo_processes_match_one_and_resume_after_sigterm(
    lstm_workspace: Workspace,
) -> None:
    # fp32: the promise is DDP's arithmetic; bf16 autocast (native on CPUs with AMX) rounds each
    # rank's half-batch products differently from the whole batch's, ~1e-3 nats apart.
    ws = lstm_workspace(max_steps=80, checkpoint_interval=5, eval_interval=50, precision="fp32")
    run(["dvc", "repro", "train@lstm"], ws)
    single_losses = _losses(ws / "plots/train/lstm.csv")
    single = load_model_dir(ws / "models/lstm").model

    # The same workspace on 2 processes: the params change reruns training from scratch.
    _set_processes(ws, 2)
    shutil.rmtree(ws / "checkpoints/lstm")
    proc = start(["dvc", "repro", "train@lstm"], ws)
    state = ws / "checkpoints/lstm/state.safetensors"
    wait_for_file(state, proc)
    # SIGTERM torchrun's agent, as a scheduler would; it forwards the signal to both ranks.
    agents = [
        p for p in psutil.Process(proc.pid).children(recursive=True) if "torch.distributed.run" in p.cmdline()
    ]
    assert len(agents) == 1, "training ended before it could be interrupted"
    workers = agents[0].children()
    assert len(workers) == 2
    # Both ranks map the one encoded training split (the page cache's copy) rather than load their own.
    train_split = str((ws / "data/encoded/train.npy").resolve())
    assert all(train_split in {m.path for m in worker.memory_maps()} for worker in workers)
    agents[0].send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) != 0
    interrupted_at = read_state(state).progress.step  # type: ignore[union-attr]
    assert 0 < interrupted_at < 80
    client = workspace_store(ws)
    runs = client.search_runs([client.get_experiment_by_name("charlm").experiment_id])
    (mlrun,) = [r for r in runs if r.data.params["distributed.world_size"] == "2"]
    assert mlrun.info.status == "KILLED"

    resumed = run(["dvc", "repro", "train@lstm"], ws)
    assert f"resuming lstm from step {interrupted_at}" in resumed.stderr
    assert client.get_run(mlrun.info.run_id).info.status == "FINISHED"

    losses = _losses(ws / "plots/train/lstm.csv")
    assert len(single_losses) == len(losses) == 80
    assert max(abs(x - y) for x, y in zip(single_losses, losses, strict=True)) < LOSS_TOLERANCE
    two = load_model_dir(ws / "models/lstm").model
    for (name, p), q in zip(single.named_parameters(), two.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-4), name
