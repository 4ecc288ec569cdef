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


def exit_spawned_rank() -> None:
    """Ends a spawned test rank once its results are saved: a barrier (no rank leaves while another
    still needs a collective), then os._exit(0); the parent checks the exit code.

    The tests that spawn ranks check pyclr's math, not torch's teardown, which has two known
    faults here: before torch 2.8 destroy_process_group() deadlocks now and then (gloo's destructor
    joins its worker threads holding the GIL while a worker waits for the GIL to free a tensor;
    seen on torch 2.4.1 about one run in three; fixed by pytorch/pytorch#154976), and on torch
    2.14.1 one CI run saw a rank abort on its way out after destroy_process_group() (SIGABRT,
    "terminate called without an active exception"; not reproduced in 140 runs here, with and
    without load; pytorch/pytorch#190489 reports that message from threads that race the GIL's
    teardown at interpreter finalization, through gloo and through autograd's worker threads).
    os._exit skips the finalization. pyclr's own ending of a torchrun group, pyclr.train.distributed
    .end_process_group, has its own tests (tests/train/test_train.py, and `torchrun -m pyclr
    train` in tests/test_cli.py)."""
    import sys

    import torch.distributed as dist

    dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
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
