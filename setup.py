"""Builds pyclr._C: the C++ operators always, the CUDA ones when torch and nvcc allow.

Environment switches:
  PYCLR_WITH_CUDA   "auto" (default: a CUDA build of torch and an nvcc of its CUDA major version
                    are present), "1" or "0"
  PYCLR_CUDA_ARCHS  GPU architectures, e.g. "9.0" or "8.0;9.0+PTX" (default: the visible
                    GPU's; with none, DEFAULT_ARCHS). TORCH_CUDA_ARCH_LIST is honoured too.
  PYCLR_CPU_AVX2    "auto" (default: on for x86-64), "1" or "0": vectorised CPU kernels
  MAX_JOBS          parallel compile jobs (ninja)
"""
import glob
import os
import platform
import re
import shutil
import subprocess
import sys

import setuptools
from setuptools import setup

# pyproject.toml's [project] table (name, dependencies, extras, the `pyclr` command) needs
# setuptools >= 64 (an older one, as Python 3.9's venv brings, silently installs a package
# named UNKNOWN without them), and its SPDX `license` string >= 77 (PEP 639; the older table
# form is deprecated from 77 on). --no-build-isolation skips build-system.requires: check here.
if int(setuptools.__version__.split(".")[0]) < 77:
    raise SystemExit(f"pyclr needs setuptools >= 77 to build, found {setuptools.__version__}: "
                     "pip install -U 'setuptools>=77'")


def locate_cuda_home() -> None:
    """torch takes CUDA_HOME from `which nvcc`; when that is a wrapper script outside the
    toolkit (as /usr/local/bin/nvcc is on our machines) point it at a real toolkit instead."""
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    nvcc = shutil.which("nvcc")
    candidates = [os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))] if nvcc else []
    for home in candidates + ["/usr/local/cuda"]:
        if os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
            os.environ["CUDA_HOME"] = home
            return


locate_cuda_home()
from torch.utils import cpp_extension  # noqa: E402  (reads CUDA_HOME on import)

DEFAULT_ARCHS = "8.0;8.6;8.9;9.0;10.0;12.0+PTX"  # the kernels need sm_80+ (bf16 tensor cores)


def toolkit_cuda_major():
    """The CUDA major version of the nvcc torch would compile with (None if it does not say)."""
    try:
        done = subprocess.run([os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc"), "--version"],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"release (\d+)\.", done.stdout)
    return int(found.group(1)) if found else None


# Why the CUDA operators were not built: compiled into the extension as
# PYCLR_CUDA_SKIPPED=<why>,<nvcc's CUDA major>,<torch's> (0 where unknown), which
# pyclr.build_info() and the "built without CUDA kernels" error put into words (pyclr/_ops.py).
SKIPPED_SWITCH, SKIPPED_NO_TOOLKIT, SKIPPED_CPU_TORCH, SKIPPED_OTHER_MAJOR, SKIPPED_ROCM_TORCH = 1, 2, 3, 4, 5


def cuda_skipped():
    """None when the CUDA operators are to be built, else (why, nvcc's CUDA major, torch's)."""
    switch = os.environ.get("PYCLR_WITH_CUDA", "auto").lower()
    if switch not in ("auto", "1", "0"):
        raise SystemExit(f"PYCLR_WITH_CUDA: expected auto, 1 or 0, got {switch!r}")
    if switch == "0":
        return SKIPPED_SWITCH, 0, 0
    import torch

    if cpp_extension.CUDA_HOME is None or torch.version.cuda is None:
        if switch == "1":
            raise SystemExit("PYCLR_WITH_CUDA=1 but no CUDA toolkit (nvcc) or no CUDA build of torch was found")
        if torch.version.cuda is not None:
            return SKIPPED_NO_TOOLKIT, 0, 0
        return (SKIPPED_ROCM_TORCH, 0, 0) if getattr(torch.version, "hip", None) else (SKIPPED_CPU_TORCH, 0, 0)
    # torch compiles extensions only with a toolkit of its own CUDA major version
    toolkit, wanted = toolkit_cuda_major(), int(torch.version.cuda.split(".")[0])
    if toolkit is not None and toolkit != wanted:
        why = (f"torch {torch.__version__} was built with CUDA {torch.version.cuda} and the nvcc in "
               f"{cpp_extension.CUDA_HOME} is CUDA {toolkit}")
        if switch == "1":
            raise SystemExit(f"PYCLR_WITH_CUDA=1, but {why}: set CUDA_HOME to a CUDA {wanted}.x toolkit")
        print(f"pyclr: building the C++ operators only: {why} (set CUDA_HOME to a CUDA {wanted}.x "
              "toolkit for the CUDA ones)", file=sys.stderr)
        return SKIPPED_OTHER_MAJOR, toolkit, wanted
    return None


def cuda_archs() -> str:
    archs = os.environ.get("PYCLR_CUDA_ARCHS") or os.environ.get("TORCH_CUDA_ARCH_LIST")
    if archs:
        return archs
    import torch

    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"{major}.{minor}"
    return DEFAULT_ARCHS


def cpu_flags() -> list:
    """ATen's Vectorized<T> is scalar unless the file is compiled for a CPU capability. On x86-64
    pyclr compiles for AVX2+FMA (every x86 server since 2013); pyclr._ops refuses to run these
    kernels on a CPU without AVX2 (PYCLR_CPU_AVX2=0 builds a portable, slower extension)."""
    switch = os.environ.get("PYCLR_CPU_AVX2", "auto").lower()
    if switch not in ("auto", "1", "0"):
        raise SystemExit(f"PYCLR_CPU_AVX2: expected auto, 1 or 0, got {switch!r}")
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    if switch == "0" or (switch == "auto" and not x86):
        return []
    return ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2",
            "-DPYCLR_CPU_AVX2"]


def openmp_flags() -> list:
    """at::parallel_for is a header template around `#pragma omp parallel`: without -fopenmp it
    silently runs on one thread. The symbols resolve to the OpenMP runtime torch loaded."""
    import torch

    info = torch.__config__.parallel_info()
    if "backend: OpenMP" in info and "OpenMP not found" not in info and sys.platform != "darwin":
        return ["-fopenmp", "-DAT_PARALLEL_OPENMP"]
    return []


def extension():
    cpp = sorted(glob.glob("csrc/**/*.cpp", recursive=True))
    cxx_flags = ["-O3"] + cpu_flags() + openmp_flags()
    skipped = cuda_skipped()
    if skipped:
        cxx_flags.append("-DPYCLR_CUDA_SKIPPED=" + ",".join(map(str, skipped)))
        return cpp_extension.CppExtension("pyclr._C", cpp, extra_compile_args={"cxx": cxx_flags})
    os.environ["TORCH_CUDA_ARCH_LIST"] = cuda_archs()  # read by cpp_extension
    return cpp_extension.CUDAExtension(
        "pyclr._C",
        cpp + sorted(glob.glob("csrc/**/*.cu", recursive=True)),
        define_macros=[("WITH_CUDA", None)],
        extra_compile_args={
            "cxx": cxx_flags,
            "nvcc": ["-O3", "-lineinfo", "--expt-relaxed-constexpr", "-DWITH_CUDA"],
        },
    )


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
