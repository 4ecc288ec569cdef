"""Validation of user-facing loss arguments: a bad input raises before any kernel runs."""
from __future__ import annotations

import torch

from .._checks import check_positive

KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


# The temperatures the losses take, the range in which every fused kernel is tested against
# float64 at both ends (tests/losses/test_ntxent.py, the CUDA code in the emulator too); the
# papers use 0.01 to 1. Logits scale as 1/tau: at tau = 1e-4 the CUDA kernel's fp32 (3xTF32)
# gradients were 5x less accurate than torch's fp32, and at 1e-10 the CPU kernel gave NaN.
TEMPERATURE_RANGE = (1e-3, 1e6)  # csrc/ntxent/ntxent.h checks the same range at the op boundary


def check_temperature(value) -> float:
    """``temperature`` as a float, a number in TEMPERATURE_RANGE."""
    value = check_positive("temperature", value)
    low, high = TEMPERATURE_RANGE
    if not low <= value <= high:
        raise ValueError(f"temperature: expected a number in [{low:g}, {high:g}], got {value}")
    return value


def check_kernel_dtype(name: str, x: torch.Tensor) -> None:
    """The dtypes the kernels take: float32, bfloat16, float16, and float64 on the CPU."""
    allowed = KERNEL_DTYPES + ((torch.float64,) if x.device.type == "cpu" else ())
    if x.dtype not in allowed:
        names = ", ".join(str(t).removeprefix("torch.") for t in KERNEL_DTYPES)
        raise TypeError(f"{name}: expected dtype {names} (or float64 on the CPU), got {x.dtype}")


def check_dense(name: str, x: torch.Tensor) -> None:
    """A strided tensor: sparse layouts reach no kernel (torch's own errors name no argument)."""
    if x.layout != torch.strided:
        raise TypeError(f"{name}: expected a dense tensor, got layout {x.layout} (call .to_dense())")


def check_views(z1, z2, kernel: bool) -> None:
    """Two (N, d) views of the same batch. ``kernel``: restrict dtypes to what kernels take."""
    for name, z in (("z1", z1), ("z2", z2)):
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(z).__name__}")
        check_dense(name, z)
        if z.dim() != 2:
            raise ValueError(f"{name}: expected a 2-D tensor of shape (batch, dim), got shape {tuple(z.shape)}")
        if z.shape[0] == 0 or z.shape[1] == 0:
            raise ValueError(f"{name}: expected a non-empty batch, got shape {tuple(z.shape)}")
        if kernel:
            check_kernel_dtype(name, z)
        elif not z.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got {z.dtype}")
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2: expected the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.dtype != z2.dtype:
        raise TypeError(f"z1 and z2: expected the same dtype, got {z1.dtype} and {z2.dtype}")
    if z1.device != z2.device:
        raise ValueError(f"z1 and z2: expected the same device, got {z1.device} and {z2.device}")
