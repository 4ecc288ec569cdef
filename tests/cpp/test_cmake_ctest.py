"""CMakeLists.txt builds csrc/ against libtorch and its C++ test of the CPU op passes (ctest)."""
import re
import shutil
import subprocess

import pytest
import torch


def toolkit_cuda_major():
    """The CUDA major version of the nvcc on PATH (None without one)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    found = re.search(r"release (\d+)\.", subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout)
    return int(found.group(1)) if found else None


def toolkit_mismatch():
    """Why torch's CMake config cannot be used with this toolkit, or None. A CUDA build of torch
    configures CUDA in find_package(Torch) and needs a toolkit of its own CUDA major version (torch
    2.4's, built with 12.1, fails on this machine's 13.0 for want of nvToolsExt and libcuda)."""
    toolkit = toolkit_cuda_major()
    if torch.version.cuda is None or toolkit is None or int(torch.version.cuda.split(".")[0]) == toolkit:
        return None
    return f"torch {torch.__version__} was built with CUDA {torch.version.cuda}; the toolkit's nvcc is CUDA {toolkit}"


MISMATCH = toolkit_mismatch()


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
@pytest.mark.skipif(MISMATCH is not None, reason=str(MISMATCH))
def test_cmake_build_and_ctest(tmp_path):
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    run = lambda *cmd: subprocess.run(cmd, capture_output=True, text=True)  # noqa: E731
    steps = [
        ("cmake", "-S", str(root), "-B", str(tmp_path), *generator,
         f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"),
        ("cmake", "--build", str(tmp_path), "-j2"),
        ("ctest", "--test-dir", str(tmp_path), "--output-on-failure"),
    ]
    for cmd in steps:
        out = run(*cmd)
        assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    assert "100% tests passed" in out.stdout
