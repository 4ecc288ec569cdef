"""setup.py's choice of the CUDA operators (PYCLR_WITH_CUDA) against the toolkit's CUDA version,
and the reason it compiles into a build without them (pyclr.build_info()'s cuda_skipped)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyclr import _ops

ROOT = Path(__file__).resolve().parents[1]
# setup.py run as pip runs it, with setuptools.setup replaced by a report of the extension it got
# (and, with PRETEND_CPU_TORCH, under a torch that says it is a CPU build)
PROBE = """import os, runpy, setuptools, torch
if os.environ.get("PRETEND_CPU_TORCH"):
    torch.version.cuda = None
if os.environ.get("PRETEND_ROCM_TORCH"):
    torch.version.cuda, torch.version.hip = None, "6.4"
def report(ext_modules, **_):
    print("cuda sources:", any(source.endswith(".cu") for source in ext_modules[0].sources))
    print("skipped:", [f for f in ext_modules[0].extra_compile_args["cxx"] if "CUDA_SKIPPED" in f])
setuptools.setup = report
runpy.run_path("setup.py", run_name="__main__")
"""

needs_cuda_torch = pytest.mark.skipif(torch.version.cuda is None,
                                      reason="a CPU build of torch: setup.py never looks for nvcc")


def stand_in_toolkit(tmp_path, nvcc_major):
    """A CUDA_HOME whose nvcc says it is CUDA ``nvcc_major`` (and can compile nothing)."""
    nvcc = tmp_path / "cuda" / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text(f'#!/bin/sh\necho "Cuda compilation tools, release {nvcc_major}.0, V{nvcc_major}.0.76"\n')
    nvcc.chmod(0o755)
    return nvcc.parent.parent


def toolkit_env(tmp_path, switch, nvcc_major, **extra_env) -> dict:
    """The environment with CUDA_HOME at a toolkit whose nvcc says it is CUDA ``nvcc_major``."""
    env = {**os.environ, "CUDA_HOME": str(stand_in_toolkit(tmp_path, nvcc_major)), "PYCLR_WITH_CUDA": switch,
           **extra_env}
    env.pop("CUDA_PATH", None)
    return env


def run_setup(tmp_path, switch, nvcc_major, **extra_env):
    """setup.py run under ``toolkit_env``, reporting the extension it would build."""
    env = toolkit_env(tmp_path, switch, nvcc_major, PYCLR_CUDA_ARCHS="9.0", **extra_env)
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


TORCH_MAJOR = int(torch.version.cuda.split(".")[0]) if torch.version.cuda else 0


@needs_cuda_torch
def test_auto_with_the_torch_cuda_major_builds_the_cuda_operators(tmp_path):
    done = run_setup(tmp_path, "auto", TORCH_MAJOR)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cuda sources: True" in done.stdout and "operators only" not in done.stderr
    assert "skipped: []" in done.stdout


@needs_cuda_torch
def test_auto_with_another_cuda_major_builds_the_cpp_operators_and_says_why(tmp_path):
    done = run_setup(tmp_path, "auto", TORCH_MAJOR - 1)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cuda sources: False" in done.stdout
    assert f"skipped: ['-DPYCLR_CUDA_SKIPPED=4,{TORCH_MAJOR - 1},{TORCH_MAJOR}']" in done.stdout
    assert (f"pyclr: building the C++ operators only: torch {torch.__version__} was built with CUDA "
            f"{torch.version.cuda} and the nvcc in {tmp_path / 'cuda'} is CUDA {TORCH_MAJOR - 1} (set CUDA_HOME "
            f"to a CUDA {TORCH_MAJOR}.x toolkit for the CUDA ones)") in done.stderr


@needs_cuda_torch
def test_forcing_cuda_with_another_cuda_major_is_an_error_naming_both(tmp_path):
    done = run_setup(tmp_path, "1", TORCH_MAJOR + 1)
    assert done.returncode != 0 and "cuda sources" not in done.stdout
    assert (f"PYCLR_WITH_CUDA=1, but torch {torch.__version__} was built with CUDA {torch.version.cuda} and the "
            f"nvcc in {tmp_path / 'cuda'} is CUDA {TORCH_MAJOR + 1}: set CUDA_HOME to a CUDA {TORCH_MAJOR}.x "
            "toolkit") in done.stderr


@needs_cuda_torch
def test_cuda_off_builds_the_cpp_operators_without_a_word(tmp_path):
    done = run_setup(tmp_path, "0", TORCH_MAJOR - 1)
    assert done.returncode == 0 and "cuda sources: False" in done.stdout and "operators only" not in done.stderr
    assert "skipped: ['-DPYCLR_CUDA_SKIPPED=1,0,0']" in done.stdout


@needs_cuda_torch
def test_a_cpu_build_of_torch_builds_the_cpp_operators_and_records_it(tmp_path):
    done = run_setup(tmp_path, "auto", TORCH_MAJOR, PRETEND_CPU_TORCH="1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cuda sources: False" in done.stdout and "skipped: ['-DPYCLR_CUDA_SKIPPED=3,0,0']" in done.stdout


@needs_cuda_torch
def test_a_rocm_build_of_torch_builds_the_cpp_operators_and_records_it(tmp_path):
    done = run_setup(tmp_path, "auto", TORCH_MAJOR, PRETEND_ROCM_TORCH="1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cuda sources: False" in done.stdout and "skipped: ['-DPYCLR_CUDA_SKIPPED=5,0,0']" in done.stdout


@pytest.mark.parametrize("codes, why, fix", [
    ([1, 0, 0], "PYCLR_WITH_CUDA=0 at build time", "reinstall without PYCLR_WITH_CUDA=0"),
    ([2, 0, 0], "no nvcc was found at build time", "reinstall with nvcc on the PATH or CUDA_HOME set"),
    ([3, 0, 0], "built against a CPU build of torch", "reinstall under a CUDA build of torch"),
    ([4, 12, 13], "nvcc was CUDA 12, torch's CUDA is 13", "reinstall with CUDA_HOME at a CUDA 13.x toolkit"),
    ([5, 0, 0], "built against a ROCm build of torch (pyclr's GPU kernels are CUDA)", "use the C++ operators"),
    ([0, 0, 0], "no reason recorded", "reinstall on a machine with nvcc and a CUDA build of torch"),
])
def test_each_recorded_reason_is_put_into_words(codes, why, fix):
    said_why, said_fix = _ops.cuda_skipped(codes)
    assert said_why == why and said_fix.startswith(fix)


def test_this_build_says_why_exactly_when_it_has_no_cuda_operators():
    info = _ops.build_info()
    assert (info["cuda_skipped"] is None) == bool(info["cuda_ops"])


@needs_cuda_torch
def test_a_cpp_only_build_reports_its_reason_in_build_info_and_in_the_cuda_error(tmp_path):
    """The whole path: setup.py's define through ninja into the compiled library, read back by a
    fresh process importing that build (nvcc of another CUDA major; about a minute on 2 cores)."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "csrc", tree / "csrc")
    shutil.copytree(ROOT / "pyclr", tree / "pyclr", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    env = toolkit_env(tmp_path, "auto", TORCH_MAJOR - 1, MAX_JOBS=os.environ.get("MAX_JOBS", "2"))
    built = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tree, env=env,
                           capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    check = """import torch, pyclr
from pyclr import _ops
assert pyclr.__file__.startswith(%r), pyclr.__file__
print("cuda_ops:", _ops.build_info()["cuda_ops"])
print("cuda_skipped:", _ops.build_info()["cuda_skipped"])
try:
    _ops.require_kernel("nt_xent_forward", torch.device("cuda"))
except RuntimeError as error:
    print("error:", error)
""" % str(tree)
    done = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(tree)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cuda_ops: []" in done.stdout
    assert f"cuda_skipped: nvcc was CUDA {TORCH_MAJOR - 1}, torch's CUDA is {TORCH_MAJOR}" in done.stdout
    assert (f"error: pyclr was built without CUDA kernels (nvcc was CUDA {TORCH_MAJOR - 1}, torch's CUDA is "
            f"{TORCH_MAJOR}), so pyclr::nt_xent_forward cannot run on cuda: reinstall with CUDA_HOME at a CUDA "
            f"{TORCH_MAJOR}.x toolkit") in done.stdout
