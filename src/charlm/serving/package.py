"""Packaging a model directory for the registry: the models-from-code pyfunc MLflow logs.

The logged model is `mlflow_model.py` (the entry MLflow runs to build it) with the `charlm`
package as its code and the model directory as its artifact, so loading it never unpickles
anything. Its signature comes from the type of `CharLMModel.predict`'s requests.
"""

from importlib.metadata import version
from pathlib import Path

import mlflow.pyfunc
from mlflow.models.model import ModelInfo

from charlm.data.vocab import Vocabulary
from charlm.model.directory import VOCAB_FILE
from charlm.serving.interface import MODEL_DIR_ARTIFACT, ServedSettings

REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "safetensors", "pyyaml", "pydantic")
ENTRY = Path(__file__).with_name("mlflow_model.py")
PACKAGE = Path(__file__).parents[1]  # charlm


def example_prompt(model_dir: Path, wanted: str) -> str:
    """`wanted` if the model knows all its characters, else a few characters it does know."""
    vocab = Vocabulary.load(model_dir / VOCAB_FILE)
    return wanted if not vocab.unknown_chars(wanted) else "".join(vocab.itos[1:4])


def log_model(model_dir: Path, run_id: str, settings: ServedSettings, prompt: str) -> ModelInfo:
    """Log a model directory as a pyfunc in `run_id`, serving with `settings` (its example request
    asks for a short text after `prompt`); returns MLflow's record of it (URI, logged model id)."""
    example = {"prompt": example_prompt(model_dir, prompt), "length": 40, "seed": 0}
    with mlflow.start_run(run_id=run_id):
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(ENTRY),
            artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
            code_paths=[str(PACKAGE)],
            model_config=settings.model_dump(mode="json"),
            input_example=[example],
            pip_requirements=[f"{pkg}=={version(pkg)}" for pkg in REQUIREMENTS],
        )
