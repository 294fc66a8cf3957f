"""The MLflow pyfunc model: generation behind `mlflow.pyfunc.load_model` and `mlflow models serve`.

`predict` takes a list of `GenerationRequest`s (over HTTP: `{"inputs": [{"prompt": ...}, ...]}`)
and returns one generated text per request. MLflow checks each request against the record before
`predict` runs; `predict` then merges its options over the defaults logged with the model and
checks every request against the vocabulary and the limits. A bad request raises an MLflow error
with INVALID_PARAMETER_VALUE, which the scoring server answers with HTTP 400 while it keeps
serving; no row of a bad request starts generating.

`predict` is thread-safe: the scoring server calls it from several threads at once, and every
call's rows join one continuously batched generation (`charlm.serving.batching`). A request still
running when the scoring server's own timeout (MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT) passes leaves
the batch and is answered 504. The scoring server runs `predict` in its event loop's default
thread pool and each waiting request holds a thread, so the pool's size bounds how many requests
a worker batches at once: `min(32, cores + 4)` under plain `mlflow models serve`, more under
`charlm serve` (see `charlm_scoring_loop`).
"""

from pathlib import Path
from typing import Any

import mlflow.pyfunc
from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import DEADLINE_EXCEEDED, INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

from charlm.errors import CharlmError
from charlm.generation.decoder import request
from charlm.model.directory import LoadedModel, load_model_dir
from charlm.serving.batching import Batcher, Overloaded
from charlm.serving.interface import MODEL_DIR_ARTIFACT, GenerationRequest, ServedSettings


class CharLMModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.loaded: LoadedModel = load_model_dir(Path(context.artifacts[MODEL_DIR_ARTIFACT]))
        self.settings = ServedSettings.parse(context.model_config)
        self.batcher = Batcher(self.loaded.model, self.loaded.vocab, self.settings.limits)

    def predict(
        self, model_input: list[GenerationRequest], params: dict[str, Any] | None = None
    ) -> list[str]:
        vocab = self.loaded.vocab
        try:  # every row is checked before any joins the batch
            options = self.settings.options(model_input)
            requests = [request(vocab, row.prompt, o) for row, o in zip(model_input, options, strict=True)]
        except CharlmError as err:
            raise MlflowException(f"invalid request: {err}", error_code=INVALID_PARAMETER_VALUE) from None
        try:
            return self.batcher.submit(requests, timeout_s=MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get())
        except Overloaded as err:  # 503; charlm_scoring_loop turns retry_after_s into Retry-After
            raise MlflowException(
                str(err), error_code=TEMPORARILY_UNAVAILABLE, retry_after_s=err.retry_after_s
            ) from None
        except TimeoutError as err:
            raise MlflowException(str(err), error_code=DEADLINE_EXCEEDED) from None
