"""directory: a model directory round-trips; a foreign vocabulary, damaged weights or a bad config
are refused by name."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from charlm.data.vocab import Vocabulary
from charlm.errors import DataError
from charlm.model.directory import (
    CONFIG_FILE,
    FORMAT,
    MODEL_FILE,
    VOCAB_FILE,
    load_model_dir,
    model_sha256,
    save_model_dir,
)
from charlm.model.heads import SoftmaxHead
from charlm.model.network import CharLM
from charlm.params.training import ArchConfig
from tests.helpers import REPO, config

VOCAB = Vocabulary.build("hello world\n")


def _model(**overrides: object) -> CharLM:
    model_config = config(ArchConfig, **{"embedding_size": 8, "hidden_size": 8, "num_layers": 1, **overrides})  # type: ignore[arg-type]
    return CharLM(model_config, len(VOCAB))


@pytest.mark.parametrize(
    "head",
    [{}, {"tie_weights": True, "head_cutoffs": []}, {"head_cutoffs": [4, 7]}, {"feedforward": 3}],
    ids=["softmax", "tied", "adaptive", "feedforward"],
)
def test_model_dir_round_trip(tmp_path: Path, head: dict[str, object]) -> None:
    model = _model(**head)
    if head.get("head_cutoffs"):
        model.head.start_at(range(len(VOCAB)))  # ranks that are not the ids: they travel with the weights
    save_model_dir(tmp_path / "m", model, VOCAB, "m", mlflow_run_id="abc")
    loaded = load_model_dir(tmp_path / "m", vocab=VOCAB)
    assert loaded.info.mlflow_run_id == "abc"
    assert loaded.info.arch == model.config and loaded.vocab == VOCAB
    idx = torch.tensor([[1, 2, 3]])
    model.eval()
    torch.testing.assert_close(loaded.net(idx)[0], model(idx)[0], rtol=0, atol=0)
    assert type(loaded.net.head) is type(model.head)
    if head.get("tie_weights"):
        assert loaded.net.head.weight is loaded.net.embedding.weight  # type: ignore[union-attr]


FORMAT_3 = REPO / "tests/fixtures/model-format-3"  # written by the release before adaptive heads


def test_directories_of_earlier_formats_load_and_score_as_they_did(tmp_path: Path) -> None:
    """Registered versions keep the files they were logged with: a format 3 directory as that
    release wrote it, and format 2, which named two keys otherwise."""
    expected = json.loads((REPO / "tests/fixtures/model-format-3.expected.json").read_text())
    loaded = load_model_dir(FORMAT_3)
    assert loaded.info.format == FORMAT and loaded.info.arch.head_cutoffs == ()
    assert loaded.info.arch.feedforward == 0
    assert loaded.info.name == "lstm" and isinstance(loaded.net.head, SoftmaxHead)
    idx = torch.from_numpy(loaded.vocab.encode(expected["prompt"]).astype("int64"))[None]
    with torch.no_grad():
        scores, _ = loaded.net(idx)
    # as that release computed them (to float32 rounding: the thread count orders its sums)
    torch.testing.assert_close(scores[0, -1], torch.tensor(expected["next_logits"]), rtol=1e-6, atol=1e-6)
    shutil.copytree(FORMAT_3, tmp_path / "m")
    info = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    old = {"vocab_sha256": "vocab_hash", "best_train_val_bpc": "best_val_bpc"}
    info = {old.get(k, k): v for k, v in info.items()} | {"format": "charlm-model/2"}
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps(info))
    vocab = json.loads((tmp_path / "m" / VOCAB_FILE).read_text())
    vocab["hash"] = vocab.pop("sha256")
    (tmp_path / "m" / VOCAB_FILE).write_text(json.dumps(vocab))
    assert load_model_dir(tmp_path / "m").info == loaded.info


def test_a_format_4_directory_loads_without_a_feedforward_block_and_keeps_its_identity(
    tmp_path: Path,
) -> None:
    save_model_dir(tmp_path / "m", _model(), VOCAB, "m")
    identity = model_sha256(tmp_path / "m")
    info = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    del info["arch"]["feedforward"]
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps(info | {"format": "charlm-model/4"}))
    loaded = load_model_dir(tmp_path / "m")
    assert loaded.info.format == FORMAT and loaded.net.feedforward is None
    assert model_sha256(tmp_path / "m") == identity  # registered versions stay the versions they were


def test_model_hash_follows_the_weights_not_the_names(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _model()
    save_model_dir(tmp_path / "a", model, VOCAB, "a")
    save_model_dir(tmp_path / "b", model, VOCAB, "b", mlflow_run_id="r")
    assert model_sha256(tmp_path / "a") == model_sha256(tmp_path / "b")
    save_model_dir(tmp_path / "c", _model(), VOCAB, "a")
    assert model_sha256(tmp_path / "c") != model_sha256(tmp_path / "a")


def test_foreign_vocabulary_is_refused(tmp_path: Path) -> None:
    save_model_dir(tmp_path / "m", _model(), VOCAB, "m")
    with pytest.raises(DataError, match="does not match the model's"):
        load_model_dir(tmp_path / "m", vocab=Vocabulary.build("other text"))
    Vocabulary.build("hello there\n").save(tmp_path / "m" / VOCAB_FILE)  # swapped file, valid on its own
    with pytest.raises(DataError, match=r"vocab\.json: vocabulary hash .* does not match the model's"):
        load_model_dir(tmp_path / "m")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "not a readable safetensors file"),
        (lambda p: p.write_bytes(b""), "not a readable safetensors file"),
        (lambda p: p.write_bytes(b"\x80\x04K\x01."), "not a readable safetensors file"),  # a pickle
        (lambda p: p.unlink(), "no such file"),
    ],
)
def test_damaged_weights_are_named(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    save_model_dir(tmp_path / "m", _model(), VOCAB, "m")
    damage(tmp_path / "m" / MODEL_FILE)
    with pytest.raises(DataError, match=rf"{MODEL_FILE}: {message}"):
        load_model_dir(tmp_path / "m")


def test_bad_config_is_named(tmp_path: Path) -> None:
    save_model_dir(tmp_path / "m", _model(), VOCAB, "m")
    config_path = tmp_path / "m" / CONFIG_FILE
    config = json.loads(config_path.read_text())
    config["arch"]["hidden_size"] = 9
    config_path.write_text(json.dumps(config))
    with pytest.raises(DataError, match=r"weights do not fit the model: .*size mismatch"):
        load_model_dir(tmp_path / "m")
    config["arch"]["hiden_size"] = config["arch"].pop("hidden_size")
    config_path.write_text(json.dumps(config))
    with pytest.raises(
        DataError, match=r"config\.json: not a valid ModelInfo: arch\.hiden_size: unknown key"
    ):
        load_model_dir(tmp_path / "m")
    config_path.write_text("{")
    with pytest.raises(DataError, match=r"config\.json: cannot read ModelInfo"):
        load_model_dir(tmp_path / "m")
    with pytest.raises(DataError, match=r"is .* a charlm model"):
        load_model_dir(tmp_path / "nowhere")
