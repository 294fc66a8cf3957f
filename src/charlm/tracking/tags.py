"""Every tag charlm sets in MLflow, each name declared once (charlm's own as `charlm.<name>`, another tool's
in its namespace, where MLflow's UI looks for it), and the tags joining a run to its code and DVC stage."""

import getpass
import os
import socket
import subprocess
import sys
from pathlib import Path

STAGE = "dvc.stage"
EXP_NAME = "dvc.exp_name"  # the DVC experiment a run belongs to (`dvc exp show` lists the same name)
SOURCE_NAME, SOURCE_TYPE = "mlflow.source.name", "mlflow.source.type"  # the run's "Source"
GIT_COMMIT = "mlflow.source.git.commit"
GIT_BRANCH = "mlflow.source.git.branch"
GIT_REPO = "mlflow.source.git.repoURL"
USER = "mlflow.user"  # the UI's "User" column
DESCRIPTION = "mlflow.note.content"  # the run's description, markdown
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"

NAME = "charlm.name"  # the `models:` entry a run or version is about
KIND = "charlm.kind"  # what a run that is not a model's holds ("comparison")
HOST, PID = "charlm.host", "charlm.pid"  # the process writing a run, to tell a live run from an orphan
TRAINING_RUN = "charlm.training_run"  # on a run made for a model whose training run is elsewhere
NOTE = "charlm.note"
VOCAB_SHA256 = "charlm.vocab_sha256"
MODEL_SHA256 = "charlm.model_sha256"  # weights, architecture and vocabulary of a registered version
NUM_PARAMS = "charlm.num_params"  # a registered version's size, which breaks ties in its ranking
DECISION = "charlm.decision"  # why registration did or did not move the alias
WRITING_FAILED = "charlm.writing_failed"  # a registered version's texts that failed the writing judge


def split_sha256(split: str) -> str:
    """The hash of an encoded split (`charlm.data.encoded`), e.g. `charlm.val_sha256`."""
    return f"charlm.{split}_sha256"


def trained_on(field: str) -> str:
    """A training summary's text field on its run (on what the figures were computed), e.g.
    `charlm.precision`."""
    return f"charlm.{field}"


def split_bpc(split: str) -> str:
    """A registered version's bits per character on a split, e.g. `charlm.val_bpc`."""
    return f"charlm.{split}_bpc"


def git(*args: str) -> str | None:
    """What `git <args>` prints, or None outside a repository (or without git)."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def source_tags() -> dict[str, str]:
    """MLflow's provenance of this process: the script, the commit, the branch and the remote."""
    found = {
        SOURCE_NAME: Path(sys.argv[0]).as_posix(),
        SOURCE_TYPE: "LOCAL",
        GIT_COMMIT: git("rev-parse", "HEAD") or "unknown",
        GIT_BRANCH: git("rev-parse", "--abbrev-ref", "HEAD"),
        GIT_REPO: git("remote", "get-url", "origin"),
    }
    return {key: value for key, value in found.items() if value}  # no branch or remote: no tag


def user() -> str:
    """Who runs a stage: the tracking server's user when credentials are given, else the login."""
    try:
        return os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser()
    except (OSError, KeyError):  # no login name in this container
        return "unknown"


def stage_tags(stage: str, name: str | None = None) -> dict[str, str]:
    """Tags that join an MLflow run to its code, DVC stage, experiment (when queued), entry and user."""
    tags = {STAGE: f"{stage}@{name}" if name else stage, USER: user(), **source_tags()}
    if os.environ.get("DVC_EXP_NAME"):
        tags[EXP_NAME] = os.environ["DVC_EXP_NAME"]
    if name is not None:
        tags[NAME] = name
    return tags


def owner_tags() -> dict[str, str]:
    """Which process is writing a run, so a later start can tell a live run from an orphan."""
    return {HOST: socket.gethostname(), PID: str(os.getpid())}
