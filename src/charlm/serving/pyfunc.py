"""The MLflow pyfunc model behind `mlflow.pyfunc.load_model` and `mlflow models serve`: `predict`
takes a request's `InputRow`s and returns one text per row, `predict_stream` yields one
text as it is generated. Thread-safe: every call's rows join one continuously batched generation."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT

import charlm_scoring_loop
from charlm.errors import CharlmError
from charlm.generation.decoder import Task
from charlm.model.directory import LoadedModel, load_model_dir
from charlm.serving.batching import Batcher
from charlm.serving.interface import MODEL_DIR_ARTIFACT, InputRow, ServedSettings
from charlm.serving.refusals import answered_as_refusals
from charlm.serving.stream import routes


class CharLMModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.loaded: LoadedModel = load_model_dir(Path(context.artifacts[MODEL_DIR_ARTIFACT]))
        self.settings = ServedSettings.parse(context.model_config)
        self.batcher = Batcher(self.loaded.net, self.loaded.vocab, self.settings.limits)
        self.timeout_s = MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get()
        # Served by `charlm serve` (on charlm_scoring_loop), the scoring server serves these too.
        charlm_scoring_loop.ROUTES.update(routes(self.tasks, self.batcher, self.timeout_s))

    def tasks(self, rows: list[InputRow]) -> list[Task]:
        """Every row checked, over the logged defaults and within the limits, before any joins
        the batch; a bad one is a CharlmError naming it."""
        return self.settings.tasks(rows, self.loaded.vocab)

    def predict(self, model_input: list[InputRow], params: dict[str, Any] | None = None) -> list[str]:
        with answered_as_refusals():
            return self.batcher.submit(self.tasks(model_input), self.timeout_s)

    def predict_stream(
        self, model_input: list[InputRow] | dict[str, Any], params: dict[str, Any] | None = None
    ) -> Iterator[str]:
        """One text, as it is generated: the same characters as `predict` gives it, in pieces. MLflow's
        `PyFuncModel.predict_stream` takes a single input, which for this model's signature (a list of
        requests) is a list of one request, `[[{"prompt": ...}]]`; it hands the request on as a dict."""
        with answered_as_refusals():
            given = [model_input] if isinstance(model_input, dict) else model_input
            rows = [InputRow.parse(row) if isinstance(row, dict) else row for row in given]
            if len(rows) != 1:
                raise CharlmError(f"inputs: a stream is of one text, got {len(rows)}")
            for (text,) in self.batcher.stream(self.tasks(rows), self.timeout_s):
                yield text
