import pytest
import torch

# CUDA cases run wherever a GPU is visible: a GPU machine whose build lacks the CUDA kernels
# should fail the kernel tests, not skip them.
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")),
]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


# Floors (relative to the value's size) under the "2x the reference's own error" rule, for
# errors that are pure rounding.
ABS_FLOOR = {torch.float64: 1e-10, torch.float32: 2e-5, torch.bfloat16: 1e-3, torch.float16: 1e-3}
