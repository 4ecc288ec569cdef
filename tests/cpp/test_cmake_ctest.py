"""CMakeLists.txt builds csrc/ against libtorch and its C++ test of the CPU op passes (ctest)."""
import shutil
import subprocess

import pytest
import torch


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
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
