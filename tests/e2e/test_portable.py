"""The registered model travels: its own logged environment installs from a public index with
MLflow's own environment manager and serves under plain `mlflow models serve`, and the image
`charlm image` writes serves what `charlm serve` serves (continuous batching, `/invocations`,
`/stream`, the page, the limits) from the model alone.

There is no container engine here, so the image is tested the way it is built: the Dockerfile's
steps run as a script in a clean environment (a fresh interpreter for `FROM`, its working
directory under the test's own), and its command starts the server the test talks to.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pytest
import yaml

from tests.helpers import (
    background_server,
    free_port,
    http_json,
    register_candidate,
    run,
    saved_candidate,
    sse_events,
)

pytestmark = pytest.mark.slow

ROW = {"prompt": "ab", "length": 60, "seed": 7}


@pytest.fixture
def champion(tmp_path: Path, mlflow_client: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A registered champion, as the register stage logs it, in the test's own store."""
    register_candidate(mlflow_client, saved_candidate(tmp_path, 1, val_bpc=2.0))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return "models:/charlm@champion"


def installers(**extra: str) -> dict[str, str]:
    """How this machine reaches a package index (pip's and uv's settings, certificates, proxies),
    with pip's folder of wheels handed to uv too, which reads no pip configuration."""
    wanted = ("PIP_", "UV_", "SSL_CERT_", "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
    env = {key: value for key, value in os.environ.items() if key.upper().startswith(wanted)}
    if "PIP_FIND_LINKS" in env:
        env.setdefault("UV_FIND_LINKS", env["PIP_FIND_LINKS"])
    return env | extra


def test_the_logged_environment_installs_and_serves_under_plain_mlflow(champion: str, tmp_path: Path) -> None:
    files = Path(mlflow.artifacts.download_artifacts(champion, dst_path=str(tmp_path / "logged")))
    requirements = (files / "requirements.txt").read_text().split()
    assert "+" not in " ".join(requirements)  # no local label: `torch==2.13.0`, not `+cpu`
    assert {r.split("==")[0] for r in requirements} >= {"mlflow", "torch", "uvicorn", "httptools", "pydantic"}
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert yaml.safe_load((files / "python_env.yaml").read_text())["python"] == minor
    assert f"python={minor}" in yaml.safe_load((files / "conda.yaml").read_text())["dependencies"]

    expected = mlflow.pyfunc.load_model(champion).predict([ROW])
    port = free_port()
    serve = ["mlflow", "models", "serve", "-m", champion, "--env-manager", "uv", "-p", str(port)]
    env = installers(MLFLOW_ENV_ROOT=str(tmp_path / "envs"))  # built afresh from the logged files
    with background_server(serve, tmp_path, f"http://127.0.0.1:{port}/ping", timeout=600, env=env):
        status, body = http_json(f"http://127.0.0.1:{port}/invocations", {"inputs": [ROW]})
    assert status == 200 and body["predictions"] == expected
    (built,) = (tmp_path / "envs").iterdir()  # not the project's environment: one of its own
    assert (built / "bin" / "python").exists() and (built / "bin" / "uvicorn").exists()


class Image:
    """A Dockerfile's steps as a script: `FROM python:X.Y-slim` is a fresh virtual environment of
    this interpreter (which must be X.Y), the image's working directory lives under `root`, `COPY`
    copies from the build context, `RUN` runs in bash, `ENV` sets variables, and `CMD` is kept as
    the command that starts the image."""

    def __init__(self, context: Path, root: Path, env: dict[str, str]) -> None:
        self.context, self.root, self.cmd = context, root, ""
        self.image_dir, self.workdir = "/", root
        self.env = {"HOME": os.environ["HOME"], "LANG": "C.UTF-8", **env}
        steps = {"FROM": self.base, "WORKDIR": self.chdir, "COPY": self.copy, "RUN": self.run}
        steps |= {"ENV": self.set, "EXPOSE": lambda port: None, "CMD": self.keep}
        for line in (context / "Dockerfile").read_text().splitlines():
            if line and not line.startswith("#"):
                instruction, _, args = line.partition(" ")
                steps[instruction](args)

    def base(self, image: str) -> None:
        (minor,) = re.fullmatch(r"python:(\d+\.\d+)-slim", image).groups()  # type: ignore[union-attr]
        assert minor == f"{sys.version_info.major}.{sys.version_info.minor}", image
        subprocess.run([sys.executable, "-m", "venv", str(self.root / "base")], check=True)
        self.env["PATH"] = f"{self.root / 'base' / 'bin'}:/usr/local/bin:/usr/bin:/bin"

    def chdir(self, path: str) -> None:
        self.image_dir, self.workdir = path, self.root / path.lstrip("/")
        self.workdir.mkdir(parents=True)

    def copy(self, args: str) -> None:
        source, target = args.split()
        shutil.copytree(self.context / source, self.workdir / target)

    def run(self, command: str) -> None:
        subprocess.run(["bash", "-c", command], cwd=self.workdir, env=self.env, check=True)

    def set(self, assignments: str) -> None:
        for assignment in shlex.split(assignments):
            key, _, value = assignment.partition("=")
            value = re.sub(r"\$(\w+)", lambda m: self.env.get(m.group(1), ""), value)
            self.env[key] = value.replace(self.image_dir, str(self.workdir))

    def keep(self, command: str) -> None:
        self.cmd = command


@pytest.fixture
def image(champion: str, tmp_path: Path) -> Iterator[str]:
    """The image `charlm image` writes for the champion, built as a script and serving; its address."""
    out = run(["charlm", "image", "--model", champion, "--out", str(tmp_path / "context")], tmp_path).stdout
    assert "docker build -t charlm-serve" in out
    port = free_port()
    built = Image(tmp_path / "context", tmp_path / "image", installers(PORT=str(port), WORKERS="1"))
    assert not (built.workdir / "venv" / "bin" / "charlm").exists()  # charlm is not installed there
    address = f"http://127.0.0.1:{port}"
    with background_server(
        ["bash", "-c", built.cmd], built.workdir, f"{address}/ping", env={**built.env, "PORT": str(port)}
    ):
        yield address


def test_the_image_serves_what_charlm_serve_serves_from_the_model_alone(champion: str, image: str) -> None:
    expected = mlflow.pyfunc.load_model(champion).predict([ROW])
    status, body = http_json(f"{image}/invocations", {"inputs": [ROW]})
    assert status == 200 and body["predictions"] == expected
    events = list(sse_events(f"{image}/stream", {"inputs": [ROW]}))
    assert "".join(data["text"] for name, data in events if name == "text") == expected[0]
    with urllib.request.urlopen(f"{image}/", timeout=30) as response:
        assert "text/html" in response.headers["Content-Type"] and "/stream" in response.read().decode()
    # The limits it was registered with (4 texts a request), by name.
    status, body = http_json(f"{image}/invocations", {"inputs": [ROW] * 5})
    assert status == 400 and "max_request_rows" in body["message"]
