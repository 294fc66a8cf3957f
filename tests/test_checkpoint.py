"""checkpoint: model directories and training-state files round-trip; bad files are refused by name."""

import json
from pathlib import Path

import pytest
import torch

from charlm.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    VOCAB_FILE,
    load_model_dir,
    load_tensors,
    save_model_dir,
    save_tensors,
)
from charlm.errors import DataError
from charlm.model import CharLM
from charlm.params import ModelConfig
from charlm.vocab import Vocabulary

VOCAB = Vocabulary.build("hello world\n")


def _model(**overrides: object) -> CharLM:
    config = ModelConfig(
        **{"embedding_size": 8, "hidden_size": 8, "num_layers": 1, "vocab_size": len(VOCAB), **overrides}
    )  # type: ignore[arg-type]
    return CharLM(config)


@pytest.mark.parametrize("tie", [False, True])
def test_model_dir_round_trip(tmp_path: Path, tie: bool) -> None:
    model = _model(tie_weights=tie)
    save_model_dir(tmp_path / "m", model, VOCAB, {"step": 7})
    loaded = load_model_dir(tmp_path / "m", vocab=VOCAB)
    assert loaded.info["step"] == 7 and loaded.vocab == VOCAB
    idx = torch.tensor([[1, 2, 3]])
    model.eval()
    torch.testing.assert_close(loaded.model(idx)[0], model(idx)[0], rtol=0, atol=0)
    if tie:
        assert loaded.model.head.weight is loaded.model.embedding.weight  # type: ignore[union-attr]


def test_foreign_vocabulary_is_refused(tmp_path: Path) -> None:
    save_model_dir(tmp_path / "m", _model(), VOCAB, {})
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
    save_model_dir(tmp_path / "m", _model(), VOCAB, {})
    damage(tmp_path / "m" / MODEL_FILE)
    with pytest.raises(DataError, match=rf"{MODEL_FILE}: {message}"):
        load_model_dir(tmp_path / "m")


def test_bad_config_is_named(tmp_path: Path) -> None:
    save_model_dir(tmp_path / "m", _model(), VOCAB, {})
    config_path = tmp_path / "m" / CONFIG_FILE
    config = json.loads(config_path.read_text())
    config["model"]["hidden_size"] = 9
    config_path.write_text(json.dumps(config))
    with pytest.raises(DataError, match=r"weights do not fit the model: .*size mismatch"):
        load_model_dir(tmp_path / "m")
    config_path.write_text("{")
    with pytest.raises(DataError, match="malformed JSON"):
        load_model_dir(tmp_path / "m")
    with pytest.raises(DataError, match=r"is .* a charlm model"):
        load_model_dir(tmp_path / "nowhere")


def test_tensors_with_metadata_round_trip(tmp_path: Path) -> None:
    tensors = {"a": torch.arange(6.0).view(2, 3), "step": torch.tensor(3.0), "rng": torch.get_rng_state()}
    save_tensors(tmp_path / "s.safetensors", tensors, {"step": 3, "nested": {"x": [1, 2]}})
    loaded, meta = load_tensors(tmp_path / "s.safetensors")
    assert meta == {"step": 3, "nested": {"x": [1, 2]}}
    for key, value in tensors.items():
        assert torch.equal(loaded[key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["s.safetensors"]  # no temporary files left


def test_pickle_payload_is_refused_even_when_torch_is_told_to_unpickle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading never goes through torch.load, so the environment cannot turn unpickling on."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "executed"
    payload = tmp_path / "state.safetensors"

    class Exploit:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (marker.write_text, ("pwned",))

    torch.save({"model": Exploit()}, payload)
    with pytest.raises(DataError, match="not a readable safetensors file"):
        load_tensors(payload)
    assert not marker.exists()


def test_file_size_limit_while_checkpointing_keeps_the_previous_file(tmp_path: Path) -> None:
    """A real RLIMIT_FSIZE in a child process: the write fails, the old file stays, no temp file."""
    import subprocess
    import sys

    path = tmp_path / "state.safetensors"
    save_tensors(path, {"w": torch.zeros(10)}, {"step": 1})
    script = f"""
import resource, torch
from charlm.checkpoint import save_tensors
from charlm.errors import run_cli
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
run_cli(lambda: save_tensors(__import__("pathlib").Path({str(path)!r}), {{"w": torch.zeros(1_000_000)}}, {{"step": 2}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "state.safetensors: could not be written (" in proc.stderr and "File too large" in proc.stderr
    assert proc.stderr.rstrip().endswith("the previous version is kept")
    tensors, meta = load_tensors(path)
    assert meta == {"step": 1} and tensors["w"].shape == (10,)
    assert [p.name for p in tmp_path.iterdir()] == ["state.safetensors"]
