"""Loads the compiled operators (``pyclr._C``) and says what was built.

Every kernel is a torch operator under ``torch.ops.pyclr``; importing ``pyclr._C`` runs their
registrations. The package still imports without the extension (a source checkout that was
not built): then ``has_kernel`` is False everywhere and the losses say how to build it.
"""
from __future__ import annotations

import torch

try:
    from . import _C  # noqa: F401  (registers torch.ops.pyclr.*)

    _LOAD_ERROR: Exception | None = None
except ImportError as exc:  # pragma: no cover - exercised only on an unbuilt checkout
    import importlib.util

    # Python calls a missing submodule "(most likely due to a circular import)": it is not built
    _LOAD_ERROR = ImportError("pyclr._C is not built") if importlib.util.find_spec("pyclr._C") is None else exc

EXTENSION_LOADED = _LOAD_ERROR is None


# CPU kernels compiled for AVX2 would crash on a CPU without it (illegal instruction).
CPU_KERNELS_USABLE = EXTENSION_LOADED and not (
    torch.ops.pyclr._cpu_avx2() and torch.backends.cpu.get_cpu_capability() == "DEFAULT"
)

# The operators with kernels (add new ones here). Which backends each has is read once, at
# import: a plain dict lookup is what torch.compile can trace through.
OPERATORS = ("nt_xent_forward", "nt_xent_backward", "swd_forward", "kmeans_step")
# An operator missing from the library (a stale build of an older checkout) has no kernels.
_DECLARED = {op for op in OPERATORS if EXTENSION_LOADED and hasattr(torch.ops.pyclr, op)}
_KERNELS = {
    (op, device_type): op in _DECLARED
    and (device_type != "cpu" or CPU_KERNELS_USABLE)
    and torch._C._dispatch_has_kernel_for_dispatch_key(f"pyclr::{op}", key)
    for op in OPERATORS
    for device_type, key in (("cpu", "CPU"), ("cuda", "CUDA"))
}


def compiling() -> bool:
    """Whether torch.compile is tracing the caller (torch.compiler.is_compiling, torch >= 2.3;
    torch._dynamo's before)."""
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(is_compiling()) if is_compiling is not None else torch._dynamo.is_compiling()


def values_readable(t: torch.Tensor) -> bool:
    """Whether a check may read ``t``'s values back (``.item()``): not while torch.compile
    traces, nor for fake or meta tensors, nor inside ``torch.vmap`` (batched tensors)."""
    if compiling() or t.device.type == "meta":
        return False
    from torch._subclasses.fake_tensor import is_fake
    return not is_fake(t) and not torch._C._functorch.is_batchedtensor(t)


def has_kernel(op: str, device_type: str) -> bool:
    """Whether ``pyclr::<op>`` has a kernel for ``device_type`` ("cpu" or "cuda")."""
    return _KERNELS.get((op, device_type), False)


def cuda_skipped(codes=None) -> tuple[str, str] | None:
    """Why this build has no CUDA operators and what fixes it, in words; None when it has them
    (or the extension did not load).

    ``codes`` is what ``torch.ops.pyclr._cuda_skipped()`` returns: setup.py's
    ``(why, nvcc's CUDA major, torch's)``, compiled into the extension."""
    if codes is None:
        if not EXTENSION_LOADED or not hasattr(torch.ops.pyclr, "_cuda_skipped"):
            return None
        codes = list(torch.ops.pyclr._cuda_skipped())
    if not codes:
        return None
    why, nvcc, wanted = codes
    if why == 1:
        return "PYCLR_WITH_CUDA=0 at build time", "reinstall without PYCLR_WITH_CUDA=0"
    if why == 2:
        return "no nvcc was found at build time", "reinstall with nvcc on the PATH or CUDA_HOME set"
    if why == 3:
        return "built against a CPU build of torch", "reinstall under a CUDA build of torch"
    if why == 4:
        return (f"nvcc was CUDA {nvcc}, torch's CUDA is {wanted}",
                f"reinstall with CUDA_HOME at a CUDA {wanted}.x toolkit")
    if why == 5:
        return "built against a ROCm build of torch (pyclr's GPU kernels are CUDA)", "use the C++ operators on the CPU"
    return ("no reason recorded",
            "reinstall on a machine with nvcc and a CUDA build of torch (PYCLR_WITH_CUDA=1 forces it)")


def require_kernel(op: str, device: torch.device) -> None:
    """Raises a clear error when no kernel of ``op`` was built for ``device``."""
    if has_kernel(op, device.type):
        return
    if not EXTENSION_LOADED:
        raise RuntimeError(
            f"pyclr's compiled operators are not available ({_LOAD_ERROR}); build them with "
            "`pip install --no-build-isolation .` from the source tree"
        )
    if device.type == "cuda":
        why, fix = cuda_skipped() or cuda_skipped([0, 0, 0])
        raise RuntimeError(
            f"pyclr was built without CUDA kernels ({why}), so pyclr::{op} cannot run on {device}: "
            f"{fix}, or use the plain-PyTorch reference in pyclr.losses.reference"
        )
    if device.type == "cpu" and not CPU_KERNELS_USABLE:
        raise RuntimeError(
            "pyclr's CPU kernels were compiled for AVX2, which this CPU lacks; reinstall with "
            "PYCLR_CPU_AVX2=0, or use the plain-PyTorch reference in pyclr.losses.reference"
        )
    raise RuntimeError(f"pyclr::{op} has no kernel for device {device}")


def build_info() -> dict:
    """What this installation of pyclr was built with and what it can see."""
    from . import __version__

    cuda = list(torch.ops.pyclr._cuda_build_info()) if EXTENSION_LOADED else []
    gpu = torch.cuda.is_available()
    return {
        "pyclr": __version__,
        "torch": torch.__version__,
        "extension_loaded": EXTENSION_LOADED,
        "cpu_ops": [op for op in OPERATORS if has_kernel(op, "cpu")],
        "cpu_avx2": bool(torch.ops.pyclr._cpu_avx2()) if EXTENSION_LOADED else None,
        "cuda_ops": [op for op in OPERATORS if has_kernel(op, "cuda")],
        "cuda_skipped": (cuda_skipped() or (None,))[0],
        "cuda_compiled_with": f"{cuda[0] // 1000}.{cuda[0] % 1000 // 10}" if cuda else None,
        "cuda_archs": [f"sm_{a // 10}" for a in cuda[1:]],
        "gpu_visible": gpu,
        "gpu_name": torch.cuda.get_device_name() if gpu else None,
    }


def format_build_info(info: dict | None = None) -> str:
    info = build_info() if info is None else info
    width = max(map(len, info))
    return "\n".join(f"{k:<{width}}  {v}" for k, v in info.items())
