"""The resumable training state (`checkpoints/<name>/state.safetensors`), in one file: every tensor needed to
continue (weights, optimizer moments, the whole batch's carried hidden state, each rank's RNG state) and, in
its safetensors header, a JSON document with the rest (the format, the fingerprint of what was trained, its
MLflow run, the `LoopState`, the optimizer's settings). Written atomically, so a crash leaves the previous
state intact. A state continues a training whose `TrainData` and spec give its fingerprint."""

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from charlm.data.vocab import Vocabulary
from charlm.errors import CharlmError, DataError
from charlm.files import atomic_path
from charlm.model.network import CharLM
from charlm.params.training import ModelSpec
from charlm.training.outputs import CURVES

STATE_FILE = "state.safetensors"
STATE_FORMAT = "charlm-train-state/8"


@dataclass(frozen=True)
class TrainData:
    train: np.ndarray
    val: np.ndarray
    vocab: Vocabulary
    sha256: dict[str, str]  # of the train and val splits (`charlm.data.report`)


def fingerprint(spec: ModelSpec, data: TrainData) -> str:
    """Identifies what a state was trained on (its seed included), and in which format; a
    mismatch means start afresh, not resume."""
    setup = [spec.model_dump(), data.vocab.sha256, data.sha256, STATE_FORMAT]
    return hashlib.sha256(json.dumps(setup, sort_keys=True).encode()).hexdigest()


@dataclass
class LoopState:
    """Where the loop is: the steps taken, the best validation so far, timings and the curves'
    history (its fields by the names `TrainSummary` gives them)."""

    steps: int = 0
    best_train_val_loss_nats: float = math.inf
    best_step: int = 0
    bad_evals: int = 0
    train_chars: int = 0  # characters trained on, over every rank
    train_time_s: float = 0.0  # in training steps only
    wall_time_s: float = 0.0  # steps, evaluation and checkpoints, over every resumed segment
    validation_s: float = 0.0  # the longest validation's length, which a time budget keeps in reserve
    averaged_steps: int = 0  # steps whose weights the running average holds (`train.average_last`)
    finished: bool = False
    stopped_early: bool = False
    history: dict[str, list[list[float]]] = field(default_factory=lambda: {name: [] for name in CURVES})


@dataclass
class TrainingState:
    fingerprint: str  # what was trained, on what (a mismatch means start afresh)
    run_id: str  # the MLflow run the steps are logged to ("" on ranks that do not track)
    loop: LoopState
    hidden: list[torch.Tensor]  # the whole batch's carried state, each (layers, B, H); [] at an epoch start
    rngs: list[torch.Tensor]  # each rank's CPU generator state, by rank
    cuda_rng: torch.Tensor | None = None
    average: list[torch.Tensor] = field(default_factory=list)  # the weights' running average, by parameter
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)  # the optimizer's state_dict

    def continues(self, fingerprint: str) -> bool:
        """Whether training with this fingerprint resumes from the state: the same, not finished."""
        return self.fingerprint == fingerprint and not self.loop.finished

    def restore(self, net: CharLM, optimizer: torch.optim.Optimizer, source: Path) -> None:
        try:
            net.load_state_dict(self.weights)  # strict: every weight, nothing else, each its shape
        except RuntimeError as err:
            raise DataError(f"{source}: weights do not fit the model: {' '.join(str(err).split())}") from None
        optimizer.load_state_dict(self.optimizer)  # moves the moments to the parameters' device


def save_state(path: Path, state: TrainingState, net: CharLM, optimizer: torch.optim.Optimizer) -> None:
    """Write `state` with `net`'s weights and `optimizer`'s moments, atomically; a failed write
    (disk full, file-size limit) leaves the previous file as it was."""
    # Tied weights are one tensor under two names; safetensors wants each stored on its own.
    tensors = {f"model.{k}": v.detach().cpu().clone() for k, v in net.state_dict().items()}
    tensors |= {f"hidden.{i}": h.detach().cpu() for i, h in enumerate(state.hidden)}
    tensors |= {f"rng.cpu.{rank}": rng for rank, rng in enumerate(state.rngs)}
    if state.cuda_rng is not None:
        tensors["rng.cuda"] = state.cuda_rng
    tensors |= {f"average.{i}": a.detach().cpu() for i, a in enumerate(state.average)}
    opt = optimizer.state_dict()  # AdamW's state is tensors alone: step and both moments, per parameter
    tensors |= {
        f"optim.{pid}.{k}": v.detach().cpu()
        for pid, values in opt["state"].items()
        for k, v in values.items()
    }
    meta = {
        "format": STATE_FORMAT,
        "fingerprint": state.fingerprint,
        "run_id": state.run_id,
        "loop": dataclasses.asdict(state.loop),
        "param_groups": opt["param_groups"],
    }
    try:
        with atomic_path(path) as tmp:
            save_file(
                {k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"meta": json.dumps(meta)}
            )
    except (OSError, SafetensorError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise CharlmError(f"{path}: could not be written ({reason}); the previous version is kept") from None


def read_state(path: Path) -> TrainingState | None:
    """The state in `path`; None when there is none, or it is from another charlm version (then
    training starts afresh). A file that is not a charlm training state is refused."""
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        meta = json.loads(header["meta"])
    except (SafetensorError, OSError, ValueError, KeyError) as err:
        raise DataError(f"{path}: not a charlm training state (truncated or foreign?): {err!r}") from None
    kind, _, _ = str(meta.get("format")).partition("/")
    if kind != STATE_FORMAT.partition("/")[0]:
        raise DataError(f"{path}: not a charlm training state")
    if meta["format"] != STATE_FORMAT:
        return None
    moments: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            moments.setdefault(int(pid), {})[name] = value
    rngs = sorted((int(k.rsplit(".", 1)[1]), v) for k, v in tensors.items() if k.startswith("rng.cpu."))
    return TrainingState(
        fingerprint=meta["fingerprint"],
        run_id=meta["run_id"],
        loop=LoopState(**meta["loop"]),
        hidden=[tensors[f"hidden.{i}"] for i in range(2) if f"hidden.{i}" in tensors],
        rngs=[rng for _, rng in rngs],
        cuda_rng=tensors.get("rng.cuda"),
        average=[tensors[f"average.{i}"] for i in range(len(tensors)) if f"average.{i}" in tensors],
        weights={k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")},
        optimizer={"state": moments, "param_groups": meta["param_groups"]},
    )
