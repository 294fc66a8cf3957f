"""device: automatic selection and precision, judged against what this machine really has."""

import pytest
import torch

from charlm.device import autocast_dtype, native_bf16, select_device
from charlm.errors import CharlmError


def test_auto_prefers_cuda_then_mps_then_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert select_device("auto").type == expected
    assert select_device("cpu").type == "cpu"


def test_unavailable_device_is_an_error() -> None:
    if torch.cuda.is_available():
        assert select_device("cuda").type == "cuda"
    else:
        with pytest.raises(CharlmError, match=r"train\.device: 'cuda' is not available"):
            select_device("cuda")


def test_precision_follows_native_bf16_support() -> None:
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    if native_bf16(cpu):
        assert autocast_dtype("auto", cpu) == autocast_dtype("bf16", cpu) == torch.bfloat16
    else:
        assert autocast_dtype("auto", cpu) is None
        with pytest.raises(CharlmError, match="bf16 is not native on this cpu"):
            autocast_dtype("bf16", cpu)
