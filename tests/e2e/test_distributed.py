"""Data-parallel training for real: two gloo processes under torchrun through `dvc repro`, sharing the
mapped training split, stopped by SIGTERM and resumed, against one process on the same global batch;
then two nodes on loopback, the second started with the command the first prints."""

import csv
import shlex
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import psutil
import pytest
import torch

from charlm.model.directory import load_model_dir
from charlm.training.state import read_state
from tests.helpers import Workspace, free_port, project_env, run, start, wait_for_file, workspace_store

pytestmark = pytest.mark.slow

# Measured gap between 2-process and 1-process runs (200 and 300 steps): under 1e-6 nats per step
# (only the order of the gradient sums differs); the bound leaves two orders of magnitude.
LOSS_TOLERANCE = 1e-4


def _losses(path: Path) -> list[float]:
    with open(path, newline="") as f:
        return [float(row["train_loss_nats"]) for row in csv.DictReader(f)]


def _set_params(ws: Path, replacements: dict[str, str]) -> None:
    params = ws / "params.yaml"
    text = params.read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    params.write_text(text)


def _follow(proc: subprocess.Popen[str], prefix: str) -> str:
    """The rest of the first line of `proc`'s stderr that starts with `prefix`; the rest of its
    stderr is drained in the background, so it never blocks on a full pipe."""
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith(prefix):
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return line.removeprefix(prefix).strip()
    raise AssertionError(f"{prefix!r} was never printed")


def test_two_gloo_processes_match_one_resume_after_sigterm_and_equal_two_nodes(
    lstm_workspace: Workspace,
) -> None:
    # fp32: the promise is DDP's arithmetic; bf16 autocast (native on CPUs with AMX) rounds each
    # rank's half-batch products differently from the whole batch's, ~1e-3 nats apart.
    ws = lstm_workspace(max_steps=80, checkpoint_interval=5, eval_interval=50, precision="fp32")
    _set_params(ws, {"feedforward: 0\n": "feedforward: 2\n"})  # every part a network can have
    run(["dvc", "repro", "train@lstm"], ws)
    single_losses = _losses(ws / "plots/train/lstm.csv")
    single = load_model_dir(ws / "models/lstm").net

    # The same workspace on 2 processes: the params change reruns training from scratch.
    _set_params(ws, {"nproc_per_node: 1\n": "nproc_per_node: 2\n"})
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
    interrupted = read_state(state)
    assert interrupted is not None and not interrupted.loop.finished
    interrupted_at = interrupted.loop.steps
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
    two = load_model_dir(ws / "models/lstm").net
    for (name, p), q in zip(single.named_parameters(), two.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-4), name

    # Two nodes of one process each, on loopback: the same world size, so the same weights, bit for
    # bit. The second node is another working copy, started with the command the first one prints.
    # Checkpoints only every 80 steps: no interruption here, and each costs a write and a log.
    nodes = {"nproc_per_node: 2\n": "nproc_per_node: 1\n", "nnodes: 1": "nnodes: 2"}
    _set_params(ws, {**nodes, "checkpoint_interval: 5\n": "checkpoint_interval: 80\n"})
    _set_params(ws, {"master_port: 29500": f"master_port: {free_port()}"})
    shutil.rmtree(ws / "checkpoints/lstm")
    node1 = shutil.copytree(ws, ws.parent / "node1", symlinks=True)
    node0 = subprocess.Popen(
        ["dvc", "repro", "train@lstm"], cwd=ws, env=project_env(), stderr=subprocess.PIPE, text=True
    )
    printed = _follow(node0, "train: on node 1 run: ")
    node1_proc = subprocess.run(
        shlex.split(printed), cwd=node1, env=project_env(), capture_output=True, text=True
    )
    assert node0.wait(timeout=300) == 0 and node1_proc.returncode == 0, node1_proc.stderr[-2000:]
    two_nodes = load_model_dir(ws / "models/lstm").net
    for (name, p), q in zip(two.named_parameters(), two_nodes.parameters(), strict=True):
        assert torch.equal(p, q), name
