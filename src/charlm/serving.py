"""The MLflow pyfunc model: generation behind `mlflow.pyfunc.load_model` and `mlflow models serve`.

Its artifacts are a charlm model directory (safetensors weights, JSON config, vocabulary); the
class is logged as code (`charlm/mlflow_model.py`), so loading never unpickles anything and works
with MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false.

Input rows: `prompt` (required) and, optionally, any field of `SamplingOptions` (`length`,
`temperature`, `top_k`, `top_p`, `seed`, `unknown`); the signature is derived from that class and
missing values take the defaults logged with the model. The output is one generated text per row.
Invalid requests raise an MLflow error with INVALID_PARAMETER_VALUE, which the scoring server
answers with HTTP 400 while it keeps serving.
"""

import dataclasses
import math
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, Schema

from charlm.checkpoint import VOCAB_FILE, LoadedModel, load_model_dir
from charlm.errors import CharlmError
from charlm.params import GenerateConfig, SamplingOptions
from charlm.sample import generate
from charlm.validation import base_type, build
from charlm.vocab import Vocabulary

MODEL_DIR_ARTIFACT = "model_dir"
COLUMN_TYPES = {int: "long", float: "double", str: "string"}
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "safetensors", "pyyaml", "pydantic")


def signature() -> ModelSignature:
    optional = [
        ColSpec(COLUMN_TYPES[base_type(f.type)], f.name, required=False)
        for f in dataclasses.fields(SamplingOptions)
    ]
    return ModelSignature(
        inputs=Schema([ColSpec("string", "prompt"), *optional]), outputs=Schema([ColSpec("string")])
    )


def _present(value: Any) -> bool:
    # Missing optional columns arrive as None or NaN (pandas fills gaps in a mixed batch).
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def request_options(
    defaults: SamplingOptions, row: dict[str, Any], max_request_chars: int
) -> SamplingOptions:
    """The sampling options of one request row: its values over the model's defaults."""
    values = dataclasses.asdict(defaults)
    for name, value in row.items():
        if name in values and _present(value):
            # JSON and pandas give whole numbers as floats; an int field takes them back.
            whole = base_type(SamplingOptions.__pydantic_fields__[name].annotation) is int
            values[name] = int(value) if whole and float(value).is_integer() else value
    options = build(SamplingOptions, values)
    if options.length > max_request_chars:
        raise CharlmError(f"length: at most {max_request_chars} per request, got {options.length}")
    return options


class CharLMModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.loaded: LoadedModel = load_model_dir(Path(context.artifacts[MODEL_DIR_ARTIFACT]))
        config = context.model_config or {}
        self.defaults = build(SamplingOptions, config.get("defaults", {}))
        self.max_request_chars = int(config.get("max_request_chars", GenerateConfig().max_request_chars))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> list[str]:
        try:
            requests = [
                generate(
                    self.loaded.model,
                    self.loaded.vocab,
                    str(row["prompt"]),
                    request_options(self.defaults, row, self.max_request_chars),
                )
                for row in model_input.to_dict("records")
            ]  # every row is checked before any is generated
            return ["".join(chars) for chars in requests]
        except (CharlmError, KeyError, TypeError, ValueError) as err:
            raise MlflowException(f"invalid request: {err}", error_code=INVALID_PARAMETER_VALUE) from None


def example_prompt(model_dir: Path, wanted: str) -> str:
    """`wanted` if the model knows all its characters, else a few characters it does know."""
    vocab = Vocabulary.load(model_dir / VOCAB_FILE)
    return wanted if not vocab.unknown_chars(wanted) else "".join(vocab.itos[1:4])


def log_model(model_dir: Path, run_id: str, cfg: GenerateConfig) -> str:
    """Log a model directory as a models-from-code pyfunc in `run_id`, sampling by default as the
    generate stage does; returns its model URI."""
    package = Path(__file__).parent
    example = {"prompt": example_prompt(model_dir, cfg.prompts[0]), "length": 40, "seed": 0}
    defaults = dataclasses.asdict(cfg.options())
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(package / "mlflow_model.py"),
            artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
            code_paths=[str(package)],
            model_config={"defaults": defaults | {"seed": None}, "max_request_chars": cfg.max_request_chars},
            signature=signature(),
            input_example=pd.DataFrame([example]),
            pip_requirements=[f"{pkg}=={version(pkg)}" for pkg in REQUIREMENTS],
        )
    return info.model_uri
