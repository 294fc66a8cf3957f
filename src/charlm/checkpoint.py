"""Model directories and training-state files: safetensors plus JSON, never pickle.

A model directory (`models/<name>/`) is self-contained: `model.safetensors` (weights),
`config.json` (the ModelConfig, the vocabulary hash, the training step and metrics) and
`vocab.json`. Loading rebuilds the model from those alone and refuses a vocabulary whose hash
differs from the one the model was trained with.

A training state (`checkpoints/<name>/state.safetensors`) holds every tensor needed to resume
(weights, optimizer moments, the carried hidden state, RNG states) and, in the safetensors header,
a JSON document with everything else. It is one file, written atomically.
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_file, save_model

from charlm import io
from charlm.errors import CharlmError, DataError
from charlm.model import CharLM
from charlm.params import ModelConfig
from charlm.vocab import Vocabulary

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
MODEL_FORMAT = "charlm-model/1"
STATE_FORMAT = "charlm-train-state/2"


def parameters(model: CharLM) -> dict[str, torch.Tensor]:
    """Weights by name, each shared (tied) tensor once, on the CPU."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters()}


def load_parameters(model: CharLM, tensors: dict[str, torch.Tensor], source: str) -> None:
    expected = dict(model.named_parameters())
    if set(tensors) != set(expected):
        missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise DataError(f"{source}: weights do not fit the model (missing {missing}, unexpected {extra})")
    with torch.no_grad():
        for name, param in expected.items():
            if tensors[name].shape != param.shape:
                raise DataError(
                    f"{source}: {name} has shape {tuple(tensors[name].shape)}, the model needs {tuple(param.shape)}"
                )
            param.copy_(tensors[name])


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write tensors and a JSON document to one safetensors file, atomically.

    A failed write (disk full, file-size limit) leaves the previous file as it was.
    """
    try:
        with io.atomic_path(path) as tmp:
            save_file(
                {k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"meta": json.dumps(meta)}
            )
    except (OSError, SafetensorError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise CharlmError(f"{path}: could not be written ({reason}); the previous version is kept") from None


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by `save_tensors`; errors name the file and what is wrong with it."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable safetensors file (truncated or foreign?): {err}") from None
    try:
        meta = json.loads(header["meta"])
    except (KeyError, json.JSONDecodeError):
        raise DataError(f"{path}: safetensors file without charlm metadata") from None
    return tensors, meta


@dataclass(frozen=True)
class LoadedModel:
    model: CharLM
    vocab: Vocabulary
    info: dict[str, Any]  # config.json: format, model, vocab_hash, step, metrics


def save_model_dir(directory: Path, model: CharLM, vocab: Vocabulary, info: dict[str, Any]) -> None:
    """Write a self-contained model directory, replacing `directory` only when complete."""
    config = {
        "format": MODEL_FORMAT,
        "model": dataclasses.asdict(model.config),
        "vocab_hash": vocab.hash,
        **info,
    }
    with io.replace_dir(directory) as staging:
        save_model(model, str(staging / MODEL_FILE), metadata={"meta": json.dumps({"format": MODEL_FORMAT})})
        io.write_json(staging / CONFIG_FILE, config)
        vocab.save(staging / VOCAB_FILE)


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DataError(
            f"{path}: cannot read model config ({err.strerror}); is {directory} a charlm model?"
        ) from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: malformed JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        raise DataError(f"{path}: not a charlm model config (format {MODEL_FORMAT!r} expected)")
    return config


def load_model_dir(
    directory: Path, device: torch.device | str = "cpu", vocab: Vocabulary | None = None
) -> LoadedModel:
    """Rebuild a model from its directory; `vocab`, when given, must be the one it was trained with."""
    directory = Path(directory)
    config = read_config(directory)
    own_vocab = Vocabulary.load(directory / VOCAB_FILE)
    for candidate, where in ((own_vocab, directory / VOCAB_FILE), (vocab, "the given vocabulary")):
        if candidate is not None and candidate.hash != config["vocab_hash"]:
            raise DataError(
                f"{where}: vocabulary hash {candidate.hash[:12]}… does not match the model's"
                f" {str(config['vocab_hash'])[:12]}… ({directory / CONFIG_FILE})"
            )
    try:
        model_config = ModelConfig(**config["model"])
    except (TypeError, ValueError) as err:  # pydantic's ValidationError is a ValueError
        raise DataError(f"{directory / CONFIG_FILE}: invalid model config ({err})") from None
    if model_config.vocab_size != len(own_vocab):
        raise DataError(
            f"{directory}: model vocab_size {model_config.vocab_size} != vocabulary size {len(own_vocab)}"
        )
    model = CharLM(model_config)
    weights = directory / MODEL_FILE
    if not weights.is_file():
        raise DataError(f"{weights}: no such file")
    try:
        load_model(model, weights)  # strict: every parameter, nothing else, each of its shape
    except (SafetensorError, OSError) as err:
        raise DataError(
            f"{weights}: not a readable safetensors file (truncated or foreign?): {err}"
        ) from None
    except RuntimeError as err:
        raise DataError(f"{weights}: weights do not fit the model: {' '.join(str(err).split())}") from None
    return LoadedModel(model=model.to(device).eval(), vocab=own_vocab, info=config)


def save_state(
    path: Path,
    model: CharLM,
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
) -> None:
    """A resumable training state: weights, optimizer moments, the caller's `tensors` (hidden
    state, RNG states) and its JSON `meta`, in one atomically written file."""
    everything = {f"model.{k}": v for k, v in parameters(model).items()} | tensors
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in opt["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                everything[f"optim.{pid}.{key}"] = value.detach().cpu()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    optimizer_meta = {"param_groups": opt["param_groups"], "scalars": scalars}
    save_tensors(path, everything, {"format": STATE_FORMAT, **meta, "optimizer": optimizer_meta})


def load_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """A training state's tensors and meta (of any charlm version: its fingerprint tells whether it
    can be resumed), or None when there is none."""
    if not path.exists():
        return None
    tensors, meta = load_tensors(path)
    if not str(meta.get("format")).startswith(STATE_FORMAT.split("/")[0]):
        raise DataError(f"{path}: not a charlm training state")
    return tensors, meta


def restore_state(
    model: CharLM,
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    source: str,
) -> None:
    """Put the weights and optimizer moments of a loaded state back into `model` and `optimizer`."""
    load_parameters(
        model, {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}, source
    )
    device = next(model.parameters()).device
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value.to(device) if name != "step" else value
    for pid, values in meta["optimizer"]["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
