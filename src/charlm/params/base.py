"""What the params sections share: their value types, the `tracking` section every stage logs
by, and reading sections from `params.yaml`, where every value is stated (no section record carries
a default). Everything reads params with `load_params`: a stage its own record's sections, after
the `params` stage has checked the whole file (`charlm.params.pipeline.Params`)."""

from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import Field

from charlm.errors import ParamsError
from charlm.records import Record

PARAMS_FILE = Path("params.yaml")

Positive = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
Globs = Annotated[tuple[str, ...], Field(strict=False)]  # YAML lists become tuples
# Texts to generate after: at least one, each at least one character.
Prompts = Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(strict=False, min_length=1)]

R = TypeVar("R", bound=Record)


def load_params(schema: type[R], path: Path = PARAMS_FILE) -> R:
    """The sections of `path` that `schema` declares, validated. A stage's record leaves the others to the
    `params` stage, whose record is the whole file (`WHOLE_FILE`): an unknown section too is refused there."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ParamsError(f"{path}: cannot read params file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: malformed YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: must be a mapping of sections, got {raw!r}")
    whole = getattr(schema, "WHOLE_FILE", False)
    return schema.parse(raw if whole else {key: raw[key] for key in schema.model_fields if key in raw})


def flatten(obj: Any, sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """Flatten nested records/dicts into keys joined by `sep`, as MLflow params (`model.cell`) and
    metrics (`val_bpc`) name them."""
    if isinstance(obj, Record):
        obj = obj.model_dump()
    if not isinstance(obj, dict):
        return {prefix.removesuffix(sep): list(obj) if isinstance(obj, tuple) else obj}
    return {k: v for key, value in obj.items() for k, v in flatten(value, sep, f"{prefix}{key}{sep}").items()}


class TrackingConfig(Record):
    experiment: Annotated[str, Field(pattern=r"\S")]  # the MLflow experiment every stage logs to
