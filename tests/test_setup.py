"""setup.py's choice of the CUDA operators (PYCLR_WITH_CUDA) against the toolkit's CUDA version."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# setup.py run as pip runs it, with setuptools.setup replaced by a report of the extension it got
PROBE = """import runpy, setuptools
def report(ext_modules, **_):
    print("cuda sources:", any(source.endswith(".cu") for source in ext_modules[0].sources))
setuptools.setup = report
runpy.run_path("setup.py", run_name="__main__")
"""

pytestmark = pytest.mark.skipif(torch.version.cuda is None, reason="a CPU build of torch: setup.py never looks for nvcc")


def run_setup(tmp_path, switch, nvcc_major):
    """setup.py with CUDA_HOME at a toolkit whose nvcc says it is CUDA ``nvcc_major``."""
    nvcc = tmp_path / "cuda" / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text(f'#!/bin/sh\necho "Cuda compilation tools, release {nvcc_major}.0, V{nvcc_major}.0.76"\n')
    nvcc.chmod(0o755)
    env = {**os.environ, "CUDA_HOME": str(tmp_path / "cuda"), "PYCLR_WITH_CUDA": switch, "PYCLR_CUDA_ARCHS": "9.0"}
    env.pop("CUDA_PATH", None)
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


TORCH_MAJOR = int(torch.version.cuda.split(".")[0]) if torch.version.cuda else 0


def test_auto_with_the_torch_cuda_major_builds_the_cuda_operators(tmp_path):
    done = run_setup(tmp_path, "auto", TORCH_MAJOR)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cuda sources: True" in done.stdout and "operators only" not in done.stderr


def test_auto_with_another_cuda_major_builds_the_cpp_operators_and_says_why(tmp_path):
    done = run_setup(tmp_path, "auto", TORCH_MAJOR - 1)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cuda sources: False" in done.stdout
    assert (f"pyclr: building the C++ operators only: torch {torch.__version__} was built with CUDA "
            f"{torch.version.cuda} and the nvcc in {tmp_path / 'cuda'} is CUDA {TORCH_MAJOR - 1} (set CUDA_HOME "
            f"to a CUDA {TORCH_MAJOR}.x toolkit for the CUDA ones)") in done.stderr


def test_forcing_cuda_with_another_cuda_major_is_an_error_naming_both(tmp_path):
    done = run_setup(tmp_path, "1", TORCH_MAJOR + 1)
    assert done.returncode != 0 and "cuda sources" not in done.stdout
    assert (f"PYCLR_WITH_CUDA=1, but torch {torch.__version__} was built with CUDA {torch.version.cuda} and the "
            f"nvcc in {tmp_path / 'cuda'} is CUDA {TORCH_MAJOR + 1}: set CUDA_HOME to a CUDA {TORCH_MAJOR}.x "
            "toolkit") in done.stderr


def test_cuda_off_builds_the_cpp_operators_without_a_word(tmp_path):
    done = run_setup(tmp_path, "0", TORCH_MAJOR - 1)
    assert done.returncode == 0 and "cuda sources: False" in done.stdout and "operators only" not in done.stderr
