"""Device and precision selection: CUDA, then MPS, then CPU; bf16 autocast where it is native."""

import contextlib

import torch

from charlm.errors import CharlmError

# Private but stable torch helpers; oneDNN's bf16 RNN kernels need AVX512-BF16 or AMX.
CPU_BF16_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def select_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; a named device must be available."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if available[d]))
    if not available.get(name, False):
        raise CharlmError(f"train.device: {name!r} is not available on this machine (use auto or cpu)")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively (not emulated, which is slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(getattr(torch.cpu, probe, lambda: False)() for probe in CPU_BF16_PROBES)
    return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` (None means plain fp32)."""
    if precision == "fp32":
        return None
    if native_bf16(device):
        return torch.bfloat16
    if precision == "bf16":
        raise CharlmError(
            f"train.precision: bf16 is not native on this {device.type} (CPUs need AVX512-BF16 or AMX,"
            " GPUs bf16 support); use auto or fp32"
        )
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[None]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
