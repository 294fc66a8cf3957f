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
from safetensors.torch import save_file

from charlm import io
from charlm.errors import CharlmError, DataError, ParamsError
from charlm.model import CharLM
from charlm.params import ModelConfig
from charlm.vocab import Vocabulary

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
MODEL_FORMAT = "charlm-model/1"
STATE_FORMAT = "charlm-train-state/1"


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
        save_tensors(staging / MODEL_FILE, parameters(model), {"format": MODEL_FORMAT})
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
    except (TypeError, ParamsError) as err:
        raise DataError(f"{directory / CONFIG_FILE}: invalid model config ({err})") from None
    if model_config.vocab_size != len(own_vocab):
        raise DataError(
            f"{directory}: model vocab_size {model_config.vocab_size} != vocabulary size {len(own_vocab)}"
        )
    model = CharLM(model_config)
    tensors, _ = load_tensors(directory / MODEL_FILE)
    load_parameters(model, tensors, str(directory / MODEL_FILE))
    return LoadedModel(model=model.to(device).eval(), vocab=own_vocab, info=config)
