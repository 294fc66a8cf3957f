"""distributed: a single process is a world of one; torchrun's command line; params that cannot
split over the processes are refused."""

import sys

import pytest
import torch

from charlm.errors import ParamsError
from charlm.params.pipeline import Params
from charlm.params.training import DistributedConfig
from charlm.training.distributed import SINGLE, torchrun_argv
from tests.helpers import config


def test_a_single_process_is_a_world_of_one() -> None:
    assert SINGLE.is_main and SINGLE.size == 1
    assert SINGLE.shard(8) == slice(0, 8)
    assert SINGLE.sum([1.5, 2.0]) == [1.5, 2.0] and SINGLE.broadcast([3.0]) == [3.0]
    t = torch.arange(4)
    assert SINGLE.gather(t)[0] is t
    SINGLE.agree(7, "anything")


def test_torchrun_command_for_one_node_and_for_several() -> None:
    script = ["stages/train.py", "--name", "lstm"]
    one = torchrun_argv(config(DistributedConfig, nproc_per_node=2), script)
    assert one[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=2" in one and "--standalone" in one and one[-3:] == script
    cfg = config(DistributedConfig, nproc_per_node=4, nnodes=2, master_addr="10.0.0.5", master_port=29600)
    second = torchrun_argv(cfg, script, node_rank=1)
    assert "--standalone" not in second
    assert {"--nnodes=2", "--node-rank=1", "--master-addr=10.0.0.5", "--master-port=29600"} <= set(second)


def test_batch_size_must_split_evenly_over_the_processes(raw_params: dict) -> None:
    raw_params["distributed"]["nproc_per_node"] = 3
    with pytest.raises(ParamsError, match=r"models\.rnn\.batch_size: must be divisible by the 3"):
        Params.parse(raw_params)
    raw_params["distributed"]["nproc_per_node"] = 0
    with pytest.raises(ParamsError, match=r"distributed\.nproc_per_node: must be >= 1"):
        Params.parse(raw_params)
