"""Device and precision selection: CUDA, then MPS, then CPU; bf16 autocast where it is native;
and the names that say on what a figure was computed."""

import contextlib
import platform
from pathlib import Path

import torch

from charlm.errors import CharlmError

# Private but stable torch helpers and the feature each probes; oneDNN's bf16 RNN kernels need one.
CPU_BF16_PROBES = {"_is_avx512_bf16_supported": "AVX512-BF16", "_is_amx_tile_supported": "AMX"}


def select_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; a named device must be available."""
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
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
        return bool(cpu_bf16())
    return False


def cpu_bf16() -> list[str]:
    """The CPU's features that run bf16 natively."""
    return [label for probe, label in CPU_BF16_PROBES.items() if getattr(torch.cpu, probe, lambda: False)()]


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


def precision_name(dtype: torch.dtype | None) -> str:
    return "fp32" if dtype is None else str(dtype).removeprefix("torch.").replace("bfloat16", "bf16")


def processor(device: torch.device) -> str:
    """The chip: the GPU's name, or the CPU's model and how it does bf16 (the same params give
    other figures with and without native bf16: `train.precision: auto`)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return device.type
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    bf16 = ", ".join(cpu_bf16()) or "no native bf16"
    return f"{name or platform.processor() or platform.machine()} ({bf16})"


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[None]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
