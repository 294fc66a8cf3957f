"""state: the training state round-trips into a fresh model and optimizer; a write that fails keeps
the previous file; a pickle is never loaded."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from charlm.errors import DataError
from charlm.model.network import CharLM
from charlm.params.training import ArchConfig, TrainConfig
from charlm.training.recipe import make_optimizer
from charlm.training.state import LoopState, TrainingState, read_state, save_state
from tests.helpers import config

CONFIG = config(
    ArchConfig, cell="lstm", embedding_size=8, hidden_size=8, num_layers=1, tie_weights=True, head_cutoffs=[]
)


def _trained(seed: int) -> tuple[CharLM, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = CharLM(CONFIG, 9)
    optimizer = make_optimizer(model, config(TrainConfig))
    logits, _ = model(torch.randint(0, 9, (2, 5)))
    logits.sum().backward()
    optimizer.step()
    return model, optimizer


def test_state_round_trips_into_a_fresh_model_and_optimizer(tmp_path: Path) -> None:
    model, optimizer = _trained(0)
    hidden = [torch.randn(1, 4, 8), torch.randn(1, 4, 8)]
    rngs = [torch.get_rng_state(), torch.get_rng_state()]
    loop = LoopState(
        steps=3, best_train_val_loss_nats=1.5, train_chars=99, history={"train": [[1, 2.0, 0.1]]}
    )
    save_state(tmp_path / "s.safetensors", TrainingState("fp", "r", loop, hidden, rngs), model, optimizer)

    state = read_state(tmp_path / "s.safetensors")
    assert state is not None and (state.fingerprint, state.run_id, state.loop) == ("fp", "r", loop)
    assert all(torch.equal(a, b) for a, b in zip(state.hidden, hidden, strict=True)) and len(state.rngs) == 2
    fresh, fresh_optimizer = _trained(1)
    state.restore(fresh, fresh_optimizer, tmp_path / "s.safetensors")
    assert fresh.head.weight is fresh.embedding.weight  # still tied  # type: ignore[union-attr]
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    moments = [optimizer.state_dict()["state"], fresh_optimizer.state_dict()["state"]]
    assert all(torch.equal(moments[0][p]["exp_avg"], moments[1][p]["exp_avg"]) for p in moments[0])
    assert [p.name for p in tmp_path.iterdir()] == ["s.safetensors"]  # no temporary files left


def test_no_state_and_foreign_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading never goes through torch.load, so the environment cannot turn unpickling on."""
    assert read_state(tmp_path / "absent.safetensors") is None
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "executed"
    payload = tmp_path / "state.safetensors"

    class Exploit:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (marker.write_text, ("pwned",))

    torch.save({"model": Exploit()}, payload)
    with pytest.raises(DataError, match="not a charlm training state"):
        read_state(payload)
    assert not marker.exists()


def test_file_size_limit_while_checkpointing_keeps_the_previous_file(tmp_path: Path) -> None:
    """A real RLIMIT_FSIZE in a child process: the write fails, the old file stays, no temp file."""
    path = tmp_path / "state.safetensors"
    model, optimizer = _trained(0)
    save_state(path, TrainingState("first", "", LoopState(steps=1), [], []), model, optimizer)
    script = f"""
import resource, torch
from pathlib import Path
from charlm.errors import run_cli
from charlm.model.network import CharLM
from charlm.params.training import ArchConfig
from charlm.params.training import TrainConfig
from charlm.training.recipe import make_optimizer
from charlm.training.state import LoopState, TrainingState, save_state
from tests.helpers import config
big = CharLM(config(ArchConfig, hidden_size=512), 9)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
state = TrainingState("second", "", LoopState(steps=2), [], [])
run_cli(lambda: save_state(Path({str(path)!r}), state, big, make_optimizer(big, config(TrainConfig))))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "state.safetensors: could not be written (" in proc.stderr and "File too large" in proc.stderr
    assert proc.stderr.rstrip().endswith("the previous version is kept")
    state = read_state(path)
    assert state is not None and state.fingerprint == "first" and state.loop.steps == 1
    assert [p.name for p in tmp_path.iterdir()] == ["state.safetensors"]
