"""The MLflow pyfunc model: generation behind `mlflow.pyfunc.load_model` and `mlflow models serve`.

Its artifacts are a charlm model directory (safetensors weights, JSON config, vocabulary); the
class is logged as code (`charlm/mlflow_model.py`), so loading never unpickles anything and works
with MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false.

Input rows: `prompt` (required) and, optionally, any field of `SamplingOptions` (`length`,
`temperature`, `top_k`, `top_p`, `seed`, `unknown`); the signature is derived from that class and
missing values take the defaults logged with the model. The output is one generated text per row.
Invalid requests raise an MLflow error with INVALID_PARAMETER_VALUE, which the scoring server
answers with HTTP 400 while it keeps serving; no row of a bad request starts generating.

`predict` is thread-safe: the scoring server calls it from several threads at once, and every
call's rows join one continuously batched generation (`charlm.batching`). A request still running
when the scoring server's own timeout (MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT) passes leaves the
batch and is answered 504. The scoring server runs `predict` in its event loop's default thread
pool and each waiting request holds a thread, so the pool's size bounds how many requests a worker
batches at once: `min(32, cores + 4)` under plain `mlflow models serve`, more under `charlm serve`
(see `charlm_scoring_loop`).
"""

import dataclasses
import math
import os
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import DEADLINE_EXCEEDED, INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, Schema

from charlm.batching import Batcher
from charlm.checkpoint import VOCAB_FILE, LoadedModel, load_model_dir
from charlm.errors import CharlmError
from charlm.params import GenerateConfig, SamplingOptions
from charlm.sample import request
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
        self.batcher = Batcher(self.loaded.model, self.loaded.vocab)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> list[str]:
        vocab = self.loaded.vocab
        try:  # every row is checked before any joins the batch
            requests = [
                request(
                    vocab, str(row["prompt"]), request_options(self.defaults, row, self.max_request_chars)
                )
                for row in model_input.to_dict("records")
            ]
        except (CharlmError, KeyError, TypeError, ValueError) as err:
            raise MlflowException(f"invalid request: {err}", error_code=INVALID_PARAMETER_VALUE) from None
        try:
            return self.batcher.submit(requests, timeout_s=MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get())
        except TimeoutError as err:
            raise MlflowException(str(err), error_code=DEADLINE_EXCEEDED) from None


def example_prompt(model_dir: Path, wanted: str) -> str:
    """`wanted` if the model knows all its characters, else a few characters it does know."""
    vocab = Vocabulary.load(model_dir / VOCAB_FILE)
    return wanted if not vocab.unknown_chars(wanted) else "".join(vocab.itos[1:4])


def log_model(model_dir: Path, run_id: str, cfg: GenerateConfig) -> ModelInfo:
    """Log a model directory as a models-from-code pyfunc in `run_id`, sampling by default as the
    generate stage does; returns MLflow's record of it (model URI, logged model id)."""
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
    return info


def serve_command(
    model_uri: str,
    host: str,
    port: int,
    workers: int | None = None,
    threads: int = 1,
) -> tuple[list[str], dict[str, str]]:
    """`mlflow models serve` for a charlm model, and its environment.

    Uvicorn runs it on `charlm_scoring_loop.ScoringLoop`: a thread pool large enough to batch many
    requests per worker, and no Nagle delay on keep-alive connections. Each worker is a process
    with its own model and batch, running `threads` torch threads; by default there are as many
    workers as the cores hold, because torch processes whose threads outnumber the cores slow each
    other down several-fold. One thread per worker measured best under concurrent load
    (benchmarks/bench_serve.py): two workers of one thread each keep the HTTP handling of each
    worker off the other's core.
    """
    # Imported here: the logged model's code is the `charlm` package alone, and serving never calls this.
    import charlm_scoring_loop
    from charlm.tracking import tracking_uri

    cores = os.cpu_count() or 1
    workers = workers or max(1, cores // threads)
    if workers * threads > cores:
        print(
            f"serve: {workers} workers x {threads} torch threads oversubscribe {cores} cores",
            file=sys.stderr,
        )
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local"]
    cmd += ["-h", host, "-p", str(port), "-w", str(workers)]
    # The scoring server starts `uvicorn` by name: find it beside this interpreter.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {
        **os.environ,
        "PATH": path,
        "MLFLOW_TRACKING_URI": tracking_uri(),
        "OMP_NUM_THREADS": str(threads),
        "UVICORN_LOOP": f"{charlm_scoring_loop.__name__}:{charlm_scoring_loop.ScoringLoop.__name__}",
    }
    return cmd, env
