"""The whole of `params.yaml`: every section, and the rules across sections. The `params` stage validates the
file with this record before any other stage runs, so a misspelt key or an out-of-range value anywhere fails
`dvc repro` before any work; `charlm params` shows it, and the `charlm` command reads its sections through it.
`dvc.yaml`'s templating reads `paths`."""

from typing import ClassVar

from pydantic import model_validator

from charlm.params.base import TrackingConfig
from charlm.params.data import FetchConfig, PrepareConfig, VocabConfig
from charlm.params.generation import EvaluateConfig, GenerateConfig
from charlm.params.registry import RegistryConfig
from charlm.params.serving import LimitsConfig
from charlm.params.training import DistributedConfig, Models
from charlm.records import Invalid


class Params(Models):
    WHOLE_FILE: ClassVar[bool] = True  # `load_params` reads every section, and refuses an unknown one

    paths: dict[str, str]
    fetch: FetchConfig
    prepare: PrepareConfig
    vocab: VocabConfig
    evaluate: EvaluateConfig
    generate: GenerateConfig
    registry: RegistryConfig
    limits: LimitsConfig
    tracking: TrackingConfig
    distributed: DistributedConfig

    @model_validator(mode="after")
    def _batches_split_over_the_processes(self) -> "Params":
        ranks = self.distributed.world_size
        for name, spec in self.models.items():
            if spec.train.batch_size % ranks:  # every rank trains on an equal share of the streams
                raise Invalid(
                    f"models.{name}.batch_size",
                    f"must be divisible by the {ranks} distributed processes, got {spec.train.batch_size}",
                )
        return self
