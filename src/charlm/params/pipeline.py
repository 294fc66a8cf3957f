"""The whole of `params.yaml`: every section, and the rules across sections.

The `params` stage validates the file with this record before any other stage runs, so a misspelt
key or an out-of-range value anywhere fails `dvc repro` before any work; `charlm params` shows it.
`dvc.yaml`'s templating reads `paths`.
"""

from pathlib import Path

from pydantic import create_model, model_validator

from charlm.params.base import PARAMS_FILE, R, TrackingConfig, load_params
from charlm.params.data import FetchConfig, PrepareConfig, VocabConfig
from charlm.params.generation import EvaluateConfig, GenerateConfig
from charlm.params.registry import RegistryConfig
from charlm.params.serving import LimitsConfig
from charlm.params.training import DistributedConfig, Models
from charlm.records import Invalid, Record


class Params(Models):
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
            if spec.batch_size % ranks:  # every rank trains on an equal share of the streams
                raise Invalid(
                    f"models.{name}.batch_size",
                    f"must be divisible by the {ranks} distributed processes, got {spec.batch_size}",
                )
        return self


def load_section(section: type[R], path: Path = PARAMS_FILE) -> R:
    """The one section of `path` that `section` types, validated as a stage's sections are."""
    (name,) = (key for key, field in Params.model_fields.items() if field.annotation is section)
    return getattr(load_params(create_model(name, __base__=Record, **{name: (section, ...)}), path), name)
