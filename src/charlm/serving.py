"""The MLflow pyfunc model: generation behind `mlflow.pyfunc.load_model` and `mlflow models serve`.

Its artifacts are a charlm model directory (safetensors weights, JSON config, vocabulary); the
class is logged as code (`charlm/mlflow_model.py`), so loading never unpickles anything and works
with MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false.

Input rows: `prompt` (required) and optionally `max_new_chars`, `temperature`, `top_k`, `top_p`,
`seed`; the output is one generated text per row. Invalid requests raise an MLflow error with
INVALID_PARAMETER_VALUE, which the scoring server answers with HTTP 400 and keeps serving.
"""

import math
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from charlm.checkpoint import LoadedModel, load_model_dir
from charlm.errors import CharlmError
from charlm.params import SamplingOptions
from charlm.sample import generate

MODEL_DIR_ARTIFACT = "model_dir"
OPTIONAL_INPUTS = {
    "max_new_chars": "long",
    "temperature": "double",
    "top_k": "long",
    "top_p": "double",
    "seed": "long",
}


def _present(value: Any) -> bool:
    # Missing optional columns arrive as None or NaN (pandas fills gaps in a mixed batch).
    return value is not None and not (isinstance(value, float) and math.isnan(value))


class CharLMModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.loaded: LoadedModel = load_model_dir(Path(context.artifacts[MODEL_DIR_ARTIFACT]))
        config = context.model_config or {}
        self.defaults = SamplingOptions(**config.get("defaults", {}))
        self.max_request_chars = int(config.get("max_request_chars", 5000))

    def options(self, row: dict[str, Any]) -> SamplingOptions:
        values = {
            "length": row.get("max_new_chars"),
            "temperature": row.get("temperature"),
            "top_k": row.get("top_k"),
            "top_p": row.get("top_p"),
            "seed": row.get("seed"),
        }
        chosen = {k: v for k, v in values.items() if _present(v)}
        for key in ("length", "top_k", "seed"):
            if key in chosen:
                chosen[key] = int(chosen[key])
        options = SamplingOptions(**{**self.defaults.__dict__, **chosen})
        if options.length > self.max_request_chars:
            raise CharlmError(
                f"max_new_chars: at most {self.max_request_chars} per request, got {options.length}"
            )
        return options

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> list[str]:
        rows = model_input.to_dict("records")
        try:
            return [
                "".join(generate(self.loaded.model, self.loaded.vocab, str(row["prompt"]), self.options(row)))
                for row in rows
            ]
        except (CharlmError, KeyError, TypeError, ValueError) as err:
            raise MlflowException(f"invalid request: {err}", error_code=INVALID_PARAMETER_VALUE) from None
