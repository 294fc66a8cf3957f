"""The MLflow pyfunc model: generation behind `mlflow.pyfunc.load_model` and `mlflow models serve`.

`predict` takes a list of `GenerationRequest`s (over HTTP: `{"inputs": [{"prompt": ...}, ...]}`)
and returns one generated text per request. MLflow checks each request against the record before
`predict` runs; `predict` then merges its options over the defaults logged with the model and
checks every request against the vocabulary and the limits. A bad request raises an MLflow error
with INVALID_PARAMETER_VALUE, which the scoring server answers with HTTP 400 while it keeps
serving; no row of a bad request starts generating.

`predict_stream` yields one text as it is generated (`mlflow.pyfunc.load_model(...).predict_stream`);
under `charlm serve` the scoring server also streams over HTTP (`charlm.serving.stream`).

`predict` is thread-safe: the scoring server calls it from several threads at once, and every
call's rows join one continuously batched generation (`charlm.serving.batching`). A request still
running when the scoring server's own timeout (MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT) passes leaves
the batch and is answered 504. The scoring server runs `predict` in its event loop's default
thread pool and each waiting request holds a thread, so the pool's size bounds how many requests
a worker batches at once: `min(32, cores + 4)` under plain `mlflow models serve`, more under
`charlm serve` (see `charlm_scoring_loop`).
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT

import charlm_scoring_loop
from charlm.errors import CharlmError
from charlm.generation.decoder import Request
from charlm.model.directory import LoadedModel, load_model_dir
from charlm.serving.batching import Batcher
from charlm.serving.interface import MODEL_DIR_ARTIFACT, GenerationRequest, ServedSettings
from charlm.serving.refusals import answered_as_refusals
from charlm.serving.stream import routes


class CharLMModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.loaded: LoadedModel = load_model_dir(Path(context.artifacts[MODEL_DIR_ARTIFACT]))
        self.settings = ServedSettings.parse(context.model_config)
        self.batcher = Batcher(self.loaded.model, self.loaded.vocab, self.settings.limits)
        # Served by `charlm serve` (on charlm_scoring_loop), the scoring server serves these too.
        timeout_s = MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()
        charlm_scoring_loop.ROUTES.update(routes(self.requests, self.batcher, timeout_s))

    def requests(self, rows: list[GenerationRequest]) -> list[Request]:
        """Every row checked, over the logged defaults and within the limits, before any joins
        the batch; a bad one is a CharlmError naming it."""
        return self.settings.requests(rows, self.loaded.vocab)

    def predict(
        self, model_input: list[GenerationRequest], params: dict[str, Any] | None = None
    ) -> list[str]:
        with answered_as_refusals():
            return self.batcher.submit(
                self.requests(model_input), MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()
            )

    def predict_stream(
        self, model_input: list[GenerationRequest] | dict[str, Any], params: dict[str, Any] | None = None
    ) -> Iterator[str]:
        """One text, as it is generated: the same characters as `predict` gives it, in pieces.

        MLflow's `PyFuncModel.predict_stream` takes a single input, which for this model's
        signature (a list of requests) is a list of one request, `[[{"prompt": ...}]]`; it hands
        the request on as a dict.
        """
        with answered_as_refusals():
            given = [model_input] if isinstance(model_input, dict) else model_input
            rows = [GenerationRequest.parse(row) if isinstance(row, dict) else row for row in given]
            if len(rows) != 1:
                raise CharlmError(f"inputs: a stream is of one text, got {len(rows)}")
            for (text,) in self.batcher.stream(
                self.requests(rows), MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()
            ):
                yield text
