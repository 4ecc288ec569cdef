"""Sends pyclr's kernel calls on float32, bfloat16 and float16 CPU tensors to the emulated CUDA
kernels (``torch.ops.pyclr_emu``), so that the package's own tests run the CUDA code.

``PYCLR_EMULATE_CUDA=1 pytest tests/losses tests/cluster`` installs it (see
tests/conftest.py): every CPU case of those tests then runs the CUDA kernels' code, while
float64 calls (which only the CPU kernels take) stay on the CPU kernels. Tests marked
``not_emulated`` (opcheck and torch.compile of the real operators, and shapes that take the
emulator minutes) are skipped in that mode.
"""
from __future__ import annotations

import importlib

import torch

# The tensor whose dtype decides, by operator: the CUDA kernels take fp32, bf16 and fp16.
_DECIDING_ARGUMENT = {"nt_xent_forward": 0, "nt_xent_backward": 1, "swd_forward": 0, "kmeans_step": 0}
_EMULATED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

calls: dict[str, int] = {name: 0 for name in _DECIDING_ARGUMENT}


def install() -> None:
    """Replaces the operator attributes of ``torch.ops.pyclr`` for the rest of the process."""
    importlib.import_module("pyclr._ops")  # registers torch.ops.pyclr.*
    from .build import build

    emulated = build()
    for name, position in _DECIDING_ARGUMENT.items():
        setattr(torch.ops.pyclr, name, _Routed(name, position, getattr(torch.ops.pyclr, name),
                                               getattr(emulated, name)))

    # What pyclr registers for its own operators, for the emulated ones: autograd links (their
    # backward functions call torch.ops.pyclr.*, routed above) and fake kernels (torch.compile).
    # the modules (pyclr.cluster.kmeans is also the name of a function)
    kmeans = importlib.import_module("pyclr.cluster.kmeans")
    ntxent = importlib.import_module("pyclr.losses.ntxent")
    swd = importlib.import_module("pyclr.losses.swd")

    torch.library.register_autograd("pyclr_emu::nt_xent_forward", ntxent._backward,
                                    setup_context=ntxent._setup_context)
    torch.library.register_autograd("pyclr_emu::swd_forward", swd._backward,
                                    setup_context=swd._setup_context)
    torch.library.register_fake("pyclr_emu::nt_xent_forward")(ntxent._forward_fake)
    torch.library.register_fake("pyclr_emu::nt_xent_backward")(ntxent._backward_fake)
    torch.library.register_fake("pyclr_emu::swd_forward")(swd._forward_fake)
    torch.library.register_fake("pyclr_emu::kmeans_step")(kmeans._step_fake)


class _Routed:
    """Stands in for ``torch.ops.pyclr.<name>``: calls on CPU tensors of the CUDA kernels'
    dtypes go to the emulator; ``.default`` (what opcheck takes) stays the real operator."""

    def __init__(self, name, position, real, emulated):
        self._name, self._position, self._real, self._emulated = name, position, real, emulated
        self.default = real.default

    def __call__(self, *args):
        tensor = args[self._position]
        if tensor.device.type == "cpu" and tensor.dtype in _EMULATED_DTYPES:
            calls[self._name] += 1
            return self._emulated(*args)
        return self._real(*args)
