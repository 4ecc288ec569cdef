import os

import pytest
import torch

# PYCLR_EMULATE_CUDA=1: float32/bf16/fp16 kernel calls on CPU tensors run the CUDA kernels'
# code in the CPU emulator (tests/emulation/route.py) instead of the CPU kernels.
EMULATE_CUDA = os.environ.get("PYCLR_EMULATE_CUDA") == "1"
if EMULATE_CUDA:
    from .emulation import route

    route.install()

TORCH_VERSION = tuple(int(part) for part in torch.__version__.split(".")[:2])  # (major, minor)

# CUDA cases run wherever a GPU is visible: a GPU machine whose build lacks the CUDA kernels
# should fail the kernel tests, not skip them.
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")),
]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


def end_process_group() -> None:
    """Ends a spawned test process's process group once its results are saved.

    Before torch 2.8 gloo's process-group destructor joins its worker threads while holding the
    GIL, and a worker that still holds the last reference to a tensor Python created waits for
    the GIL to free it: destroy_process_group() then deadlocks now and then (seen here on torch
    2.4.1, about one run in three; fixed by pytorch/pytorch#154976, "Release GIL in PG
    destructor"). There the process ends at once instead: its results are on disk, and the
    parent checks its exit code."""
    import torch.distributed as dist

    if TORCH_VERSION >= (2, 8):
        dist.destroy_process_group()
    else:
        os._exit(0)


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


# Floors (relative to the value's size) under the "2x the reference's own error" rule, for
# errors that are pure rounding.
ABS_FLOOR = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 1e-3, torch.float16: 1e-3}


def pytest_report_header(config):
    if EMULATE_CUDA:
        return "pyclr: CUDA kernels emulated on the CPU for float32/bf16/fp16 CPU tensors (PYCLR_EMULATE_CUDA=1)"


def pytest_collection_modifyitems(config, items):
    if EMULATE_CUDA:
        for item in items:
            marker = item.get_closest_marker("not_emulated")
            if marker is not None:
                why = marker.args[0] if marker.args else "needs the real operators"
                item.add_marker(pytest.mark.skip(reason=f"not under PYCLR_EMULATE_CUDA=1: {why}"))


def pytest_terminal_summary(terminalreporter):
    if EMULATE_CUDA:
        counts = ", ".join(f"{name} {n}" for name, n in route.calls.items())
        terminalreporter.write_line(f"pyclr: emulated CUDA kernel calls: {counts}")
