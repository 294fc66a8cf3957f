"""Model directories (`models/<name>/`), self-contained and never pickled: `model.safetensors`, `config.json`
(`ModelInfo`) and `vocab.json`; loading refuses a vocabulary whose hash differs from the model's."""

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import model_validator
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from charlm.data.vocab import Vocabulary
from charlm.errors import DataError
from charlm.files import replace_dir
from charlm.model.network import CharLM
from charlm.params.training import ArchConfig
from charlm.records import Record

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"


# Earlier formats' directories (registered versions among them) still load: formats 2 and 3 named
# the architecture `model` and had a full softmax head, which format 4 states; they also held the
# exporting step and its validation bpc (the training summary has them), and format 2 named the
# vocabulary's hash `vocab_hash`. Format 5 added settings whose absence meant the network before
# them; a model's identity leaves them out at those values, so a model keeps its identity.
SOFTMAX_HEAD = {"head_cutoffs": [], "head_div": 4.0}  # no cut-off: the division is never used
DROPPED_IN_4 = ("step", "best_val_bpc", "best_train_val_bpc")
ADDED_IN_5 = {"feedforward": 0}
FORMAT = "charlm-model/5"


class ModelInfo(Record):
    """`config.json`: everything but the weights and the vocabulary."""

    format: Literal["charlm-model/5"] = FORMAT
    name: str
    arch: ArchConfig
    vocab_size: int
    vocab_sha256: str
    mlflow_run_id: str | None = None  # the training run, where later stages log this model's results

    @model_validator(mode="before")
    @classmethod
    def _from_earlier_formats(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        if raw.get("format") in ("charlm-model/2", "charlm-model/3"):
            info = {
                ("vocab_sha256" if k == "vocab_hash" else k): v
                for k, v in raw.items()
                if k not in DROPPED_IN_4
            }
            arch = info.pop("model", None)
            raw = info | {
                "format": "charlm-model/4",
                "arch": arch | SOFTMAX_HEAD if isinstance(arch, dict) else arch,
            }
        if raw.get("format") == "charlm-model/4":
            arch = raw.get("arch")
            raw = raw | {"format": FORMAT, "arch": ADDED_IN_5 | arch if isinstance(arch, dict) else arch}
        return raw


@dataclass(frozen=True)
class LoadedModel:
    net: CharLM
    vocab: Vocabulary
    info: ModelInfo


def save_model_dir(
    directory: Path, net: CharLM, vocab: Vocabulary, name: str, mlflow_run_id: str | None = None
) -> None:
    """Write a self-contained model directory, replacing `directory` only when complete."""
    info = ModelInfo(
        name=name,
        arch=net.config,
        vocab_size=net.vocab_size,
        vocab_sha256=vocab.sha256,
        mlflow_run_id=mlflow_run_id,
    )
    # A copy on the CPU: on CUDA a cell's weights are views of one flat cuDNN buffer, which
    # safetensors refuses to store piecewise; tied weights stay one tensor, stored once.
    cpu_model = copy.deepcopy(net).cpu()
    with replace_dir(directory) as staging:
        save_model(cpu_model, str(staging / MODEL_FILE))
        info.write(staging / CONFIG_FILE)
        vocab.save(staging / VOCAB_FILE)


def read_info(directory: Path) -> ModelInfo:
    if not (directory / CONFIG_FILE).is_file():
        raise DataError(f"{directory / CONFIG_FILE}: no such file; is {directory} a charlm model?")
    return ModelInfo.read(directory / CONFIG_FILE)


def load_model_dir(
    directory: Path, device: torch.device | str = "cpu", vocab: Vocabulary | None = None
) -> LoadedModel:
    """Rebuild a model from its directory; `vocab`, when given, must be the one it was trained with."""
    directory = Path(directory)
    info = read_info(directory)
    own_vocab = Vocabulary.load(directory / VOCAB_FILE)
    for candidate, where in ((own_vocab, directory / VOCAB_FILE), (vocab, "the given vocabulary")):
        if candidate is not None and candidate.sha256 != info.vocab_sha256:
            raise DataError(
                f"{where}: vocabulary hash {candidate.sha256[:12]}… does not match the model's"
                f" {info.vocab_sha256[:12]}… ({directory / CONFIG_FILE})"
            )
    if info.vocab_size != len(own_vocab):
        raise DataError(
            f"{directory}: model vocab_size {info.vocab_size} != vocabulary size {len(own_vocab)}"
        )
    net = CharLM(info.arch, info.vocab_size)
    weights = directory / MODEL_FILE
    if not weights.is_file():
        raise DataError(f"{weights}: no such file")
    try:
        load_model(net, weights)  # strict: every parameter, nothing else, each of its shape
    except (SafetensorError, OSError) as err:
        raise DataError(
            f"{weights}: not a readable safetensors file (truncated or foreign?): {err}"
        ) from None
    except RuntimeError as err:
        raise DataError(f"{weights}: weights do not fit the model: {' '.join(str(err).split())}") from None
    return LoadedModel(net=net.to(device).eval(), vocab=own_vocab, info=info)


def model_sha256(directory: Path) -> str:
    """Identifies the weights, architecture and vocabulary (not the metrics) of a model directory."""
    info = read_info(directory)
    arch = {k: v for k, v in info.arch.model_dump().items() if ADDED_IN_5.get(k, object()) != v}
    identity = [arch, info.vocab_size, info.vocab_sha256]
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode())
    digest.update((directory / MODEL_FILE).read_bytes())
    return digest.hexdigest()
