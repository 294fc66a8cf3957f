"""device: automatic selection and precision, every branch, with the capability probes faked."""

from collections.abc import Callable

import pytest
import torch

from charlm.errors import CharlmError
from charlm.model.device import CPU_BF16_PROBES, autocast_dtype, native_bf16, select_device

Machine = Callable[..., None]


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Machine:
    """`machine(cuda=..., mps=..., cuda_bf16=..., cpu_bf16=...)` makes torch report those capabilities."""

    def fake(cuda: bool = False, mps: bool = False, cuda_bf16: bool = False, cpu_bf16: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: cuda_bf16)
        for probe in CPU_BF16_PROBES:
            monkeypatch.setattr(torch.cpu, probe, lambda: cpu_bf16, raising=False)

    return fake


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(machine: Machine, cuda: bool, mps: bool, expected: str) -> None:
    machine(cuda=cuda, mps=mps)
    assert select_device("auto").type == expected
    assert select_device("cpu").type == "cpu"


@pytest.mark.parametrize("name", ["cuda", "mps"])
def test_a_named_device_must_be_available(machine: Machine, name: str) -> None:
    machine(cuda=True, mps=True)
    assert select_device(name).type == name
    machine()
    with pytest.raises(CharlmError, match=rf"train\.device: '{name}' is not available on this machine"):
        select_device(name)


@pytest.mark.parametrize(
    ("device", "capabilities", "native"),
    [
        ("cuda", {"cuda_bf16": True}, True),
        ("cuda", {"cuda_bf16": False}, False),
        ("cpu", {"cpu_bf16": True}, True),
        ("cpu", {"cpu_bf16": False}, False),
        ("mps", {"cpu_bf16": True, "cuda_bf16": True}, False),
    ],
)
def test_bf16_autocast_only_where_native(
    machine: Machine, device: str, capabilities: dict[str, bool], native: bool
) -> None:
    machine(**capabilities)
    dev = torch.device(device)
    assert native_bf16(dev) is native
    assert autocast_dtype("fp32", dev) is None
    if native:
        assert autocast_dtype("auto", dev) == autocast_dtype("bf16", dev) == torch.bfloat16
    else:
        assert autocast_dtype("auto", dev) is None
        with pytest.raises(CharlmError, match=f"train.precision: bf16 is not native on this {device}"):
            autocast_dtype("bf16", dev)
