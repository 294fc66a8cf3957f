"""Packaging a model directory for the registry: the models-from-code pyfunc MLflow logs
(`mlflow_model.py`, with `charlm` and `charlm_scoring_loop` as its code and the model directory as
its artifact), which loads without unpickling anything and installs anywhere."""

import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlflow.pyfunc
import yaml
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.models.model import ModelInfo
from packaging.version import Version

import charlm_scoring_loop
from charlm.data.vocab import Vocabulary
from charlm.model.directory import VOCAB_FILE
from charlm.serving.interface import MODEL_DIR_ARTIFACT, ServedSettings

# What the served code imports (uvicorn: the scoring loop's hook), pandas, which MLflow's scoring
# server reads requests with, and httptools, the HTTP parser uvicorn takes when it is installed.
REQUIREMENTS = (
    "mlflow",
    "torch",
    "numpy",
    "pandas",
    "safetensors",
    "pyyaml",
    "pydantic",
    "uvicorn",
    "httptools",
)
ENTRY = Path(__file__).with_name("mlflow_model.py")
CODE = (Path(__file__).parents[1], Path(charlm_scoring_loop.__file__))  # charlm, and the loop beside it
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"  # the code runs on any release of it
PYTHON_ENV, CONDA_ENV = "python_env.yaml", "conda.yaml"


def requirements() -> list[str]:
    """The served code's packages at the releases installed here, without a local label: a public
    index carries none, and `torch==2.13.0` takes its CPU or a CUDA build alike (`+cpu` would not)."""
    return [f"{pkg}=={Version(version(pkg)).public}" for pkg in REQUIREMENTS]


def log_model(model_dir: Path, run_id: str, settings: ServedSettings, prompt: str) -> ModelInfo:
    """Log a model directory as a pyfunc in `run_id`, serving with `settings` (its example request
    asks for a short text after `prompt`, or after a few characters the model knows if it does not
    know all of `prompt`'s); returns MLflow's record of it (URI, logged model id)."""
    vocab = Vocabulary.load(model_dir / VOCAB_FILE)
    known = prompt if not vocab.unknown_chars(prompt) else "".join(vocab.itos[1:4])
    example = {"prompt": known, "length": 40, "seed": 0}
    with mlflow.start_run(run_id=run_id):
        logged = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(ENTRY),
            artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
            code_paths=[str(path) for path in CODE],
            model_config=settings.model_dump(mode="json"),
            input_example=[example],
            pip_requirements=requirements(),
        )
    loosen_interpreter(logged)
    return logged


def loosen_interpreter(logged: ModelInfo) -> None:
    """Rewrite the logged environments to ask for this minor version of Python, not this exact
    release: MLflow writes the running interpreter's (`3.11.7`), which an environment manager or an
    image elsewhere may not have."""
    client = MlflowClient()
    location = client.get_logged_model(logged.model_id).artifact_location
    with tempfile.TemporaryDirectory() as tmp:
        for name, pin in ((PYTHON_ENV, PYTHON), (CONDA_ENV, f"python={PYTHON}")):
            path = Path(download_artifacts(artifact_uri=f"{location}/{name}", dst_path=tmp))
            env = yaml.safe_load(path.read_text())
            if name == PYTHON_ENV:
                env["python"] = pin
            else:
                env["dependencies"] = [
                    pin if str(d).startswith("python=") else d for d in env["dependencies"]
                ]
            path.write_text(yaml.safe_dump(env, sort_keys=False))
            client.log_model_artifact(logged.model_id, str(path))
