"""A container image that serves a registered model as `charlm serve` does, built from the model
alone: `charlm image` writes its build context (the model's artifacts and a Dockerfile).
docs/deploy.md says why MLflow's own images do not serve it."""

from pathlib import Path

import yaml
from mlflow.artifacts import download_artifacts

from charlm.files import replace_dir, write_text
from charlm.serving.package import PYTHON_ENV

MODEL = "model"  # the model's artifacts, in the build context and the image's working directory
ROOT = "/srv/charlm"  # the image's working directory
PORT = 8080

DOCKERFILE = """\
# charlm's scoring server for {uri}: continuous batching, /invocations, /stream and a page at /.
# Build and run: docker build -t charlm-serve . && docker run -p {port}:{port} charlm-serve
# PORT, WORKERS (default: one per core) and CHARLM_SCORING_THREADS may be set at run time.
FROM python:{python}-slim
WORKDIR {root}
COPY {model} {model}
RUN pip install --no-cache-dir uv && uv venv venv && VIRTUAL_ENV=venv uv pip install --no-cache -r {model}/requirements.txt
ENV PATH={root}/venv/bin:$PATH PYTHONPATH={root}/{model}/code PORT={port}
EXPOSE {port}
CMD python -m charlm.cli serve --uri {model} --host 0.0.0.0 --port "$PORT" ${{WORKERS:+--workers $WORKERS}}
"""


def write_image(uri: str, out: Path) -> Path:
    """Download the model at `uri` into `out` and write the Dockerfile beside it; `out` is the
    image's build context. The base image is the Python the model's environment asks for."""
    with replace_dir(out) as staging:
        download_artifacts(artifact_uri=uri, dst_path=str(staging / MODEL))
        python = yaml.safe_load((staging / MODEL / PYTHON_ENV).read_text())["python"]
        text = DOCKERFILE.format(uri=uri, python=python, root=ROOT, model=MODEL, port=PORT)
        write_text(staging / "Dockerfile", text)
    return out / "Dockerfile"
