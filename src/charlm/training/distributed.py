"""Data-parallel training (DDP): the train stage relaunched under torchrun, one process per rank,
each rank's share of the streams, and the small collectives by which every rank follows rank 0,
which alone validates, checkpoints, exports and talks to MLflow."""

import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist

from charlm.errors import CharlmError
from charlm.params.training import DistributedConfig


def launched() -> bool:
    """Whether this process is a rank started by torchrun."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def torchrun_argv(cfg: DistributedConfig, script: list[str], node_rank: int = 0) -> list[str]:
    """The command that runs `script` (a python script and its arguments) on `cfg`'s ranks."""
    argv = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={cfg.nproc_per_node}"]
    if cfg.nnodes == 1:
        argv.append("--standalone")  # a private rendezvous on a free local port
    else:
        argv += [
            f"--nnodes={cfg.nnodes}",
            f"--node-rank={node_rank}",
            f"--master-addr={cfg.master_addr}",
            f"--master-port={cfg.master_port}",
        ]
    return argv + script


def relaunch(cfg: DistributedConfig) -> NoReturn:
    """Replace this process with torchrun running this same script and arguments; exec keeps the process
    id, so DVC waits on torchrun itself and Ctrl-C reaches every rank. On more than one node, the command
    to run on each other node is printed first."""
    script = [sys.argv[0], *sys.argv[1:]]
    for node in range(1, cfg.nnodes):
        command = shlex.join(["python", *torchrun_argv(cfg, script, node)[1:]])
        print(f"train: on node {node} run: {command}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    argv = torchrun_argv(cfg, script)
    os.execv(argv[0], argv)


@dataclass(frozen=True)
class World:
    """This process's place among the training ranks; a single process is a world of one."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    comm_device: str = "cpu"  # where collectives want their tensors: cuda:<local rank> for nccl
    node: int = 0  # this machine among `nodes`
    nodes: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def node_label(self) -> str | None:
        """Names this node where several train together (system metrics are logged per node)."""
        return f"node_{self.node}" if self.nodes > 1 else None

    def shard(self, batch_size: int) -> slice:
        """This rank's streams among `batch_size` (divisibility is checked with the params)."""
        per_rank = batch_size // self.size
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of `values` over every rank."""
        return self._floats(values, dist.all_reduce)

    def broadcast(self, values: list[float]) -> list[float]:
        """Rank 0's `values`, on every rank."""
        return self._floats(values, lambda t: dist.broadcast(t, src=0))

    def _floats(self, values: list[float], collective: Callable[[torch.Tensor], object]) -> list[float]:
        if self.size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.comm_device)
        collective(t)
        return t.tolist()

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's `tensor` (same shape everywhere), in rank order, on the tensor's device."""
        if self.size == 1:
            return [tensor]
        local = tensor.detach().to(self.comm_device).contiguous()
        parts = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(parts, local)
        return [p.to(tensor.device) for p in parts]

    def broadcast_text(self, text: str) -> str:
        """Rank 0's `text` (ASCII, up to 64 characters), on every rank."""
        if self.size == 1:
            return text
        codes = [float(ord(c)) for c in text.ljust(64)[:64]]
        return "".join(chr(int(c)) for c in self.broadcast(codes)).rstrip()

    def agree(self, value: int, what: str) -> None:
        """Fail on every rank unless all ranks hold the same `value`."""
        values = [int(v) for v in self.gather(torch.tensor([value], dtype=torch.int64))]
        if len(set(values)) > 1:
            raise CharlmError(f"training ranks disagree on {what}: {values}")


SINGLE = World()


@contextmanager
def world(backend: str) -> Iterator[World]:
    """Join the process group torchrun set up (nothing to do for a single process)."""
    if not launched():
        yield SINGLE
        return
    local_rank = int(os.environ["LOCAL_RANK"])
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    comm_device = "cpu"
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise CharlmError("distributed.backend: nccl needs CUDA GPUs; use gloo (or auto) on CPU")
        torch.cuda.set_device(local_rank)  # so "cuda" means this rank's own GPU
        comm_device = f"cuda:{local_rank}"
    dist.init_process_group(backend)
    try:
        nodes = int(os.environ["WORLD_SIZE"]) // int(os.environ["LOCAL_WORLD_SIZE"])
        node = int(os.environ["GROUP_RANK"])  # torchrun's name for the node's rank
        yield World(dist.get_rank(), dist.get_world_size(), local_rank, comm_device, node, nodes)
    finally:
        dist.destroy_process_group()
