"""Data-parallel training: the world helpers, torchrun's command line, and real 2-process gloo runs."""

import csv
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import torch

from charlm.checkpoint import load_model_dir, load_tensors
from charlm.distributed import SINGLE, torchrun_argv
from charlm.errors import ParamsError
from charlm.params import DistributedConfig, parse_params
from tests.conftest import run, start, wait_for_file, workspace_store

Workspace = Callable[..., Path]
# Measured gap between 2-process and 1-process runs (200 and 300 steps): under 1e-6 nats per step
# (only the order of the gradient sums differs); the bound leaves two orders of magnitude.
LOSS_TOLERANCE = 1e-4


def test_a_single_process_is_a_world_of_one() -> None:
    assert SINGLE.is_main and SINGLE.size == 1
    assert SINGLE.shard(8) == slice(0, 8)
    assert SINGLE.sum([1.5, 2.0]) == [1.5, 2.0] and SINGLE.broadcast([3.0]) == [3.0]
    t = torch.arange(4)
    assert SINGLE.gather(t)[0] is t
    SINGLE.agree(7, "anything")


def test_torchrun_command_for_one_node_and_for_several() -> None:
    script = ["stages/train.py", "--model", "lstm"]
    one = torchrun_argv(DistributedConfig(nproc_per_node=2), script)
    assert one[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=2" in one and "--standalone" in one and one[-3:] == script
    cfg = DistributedConfig(nproc_per_node=4, nnodes=2, master_addr="10.0.0.5", master_port=29600)
    second = torchrun_argv(cfg, script, node_rank=1)
    assert "--standalone" not in second
    assert {"--nnodes=2", "--node-rank=1", "--master-addr=10.0.0.5", "--master-port=29600"} <= set(second)


def test_batch_size_must_split_evenly_over_the_processes(raw_params: dict) -> None:
    raw_params["distributed"]["nproc_per_node"] = 3
    with pytest.raises(ParamsError, match=r"models\.rnn\.batch_size: must be divisible by the 3"):
        parse_params(raw_params)
    raw_params["distributed"]["nproc_per_node"] = 0
    with pytest.raises(ParamsError, match=r"distributed\.nproc_per_node: must be >= 1"):
        parse_params(raw_params)


def _losses(path: Path) -> list[float]:
    with open(path, newline="") as f:
        return [float(row["train_loss_nats"]) for row in csv.DictReader(f)]


def _set_processes(ws: Path, n: int) -> None:
    params = ws / "params.yaml"
    text = params.read_text()
    params.write_text(text.replace("nproc_per_node: 1\n", f"nproc_per_node: {n}\n"))


@pytest.mark.slow
def test_two_gloo_processes_match_one_and_resume_after_sigterm(
    lstm_workspace: Workspace,
) -> None:
    ws = lstm_workspace(max_steps=80, checkpoint_interval=5, eval_interval=50)
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
    agents[0].send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) != 0
    interrupted_at = load_tensors(state)[1]["trainer"]["step"]
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
