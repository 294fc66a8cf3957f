"""The `distributed` section: more than one process in all runs each train stage under torchrun."""

from typing import Annotated, Literal

from pydantic import Field

from charlm.records import Record


class DistributedConfig(Record):
    nproc_per_node: Annotated[int, Field(ge=1)]
    nnodes: Annotated[int, Field(ge=1)]
    master_addr: Annotated[str, Field(pattern=r"\S")]  # node 0 as the other nodes reach it
    master_port: Annotated[int, Field(gt=0, lt=65536)]
    backend: Literal["auto", "gloo", "nccl"]

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes
