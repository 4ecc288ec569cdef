"""Builds pyclr's CUDA kernels for the CPU emulator (shim/pyclr_emu.h) and loads them as
``torch.ops.pyclr_emu.*``.

Each ``csrc/*/*_cuda.cu`` is rewritten mechanically into a C++ file, then compiled by the host
compiler with ``torch.utils.cpp_extension.load``:
- ``kernel<<<grid, block, smem, stream>>>(args)`` becomes
  ``::pyclr_emu::launcher(kernel, grid, block, smem, stream)(args)``;
- ``__shared__ T name[...];`` becomes a reference to the block's emulated shared memory, and
  ``extern __shared__ ... T name[];`` a pointer to its dynamic shared memory;
- ``.is_cuda()`` becomes ``.is_cpu()`` (the emulated kernels take CPU tensors) and the
  ``TORCH_LIBRARY_IMPL(pyclr, CUDA, m)`` block is left unregistered (shim/pyclr_emu_runtime.cpp
  registers the entry points under ``pyclr_emu``).
Nothing else changes: the device code that runs is the code a GPU would run.

``python -m tests.emulation.build`` builds (or finds) it and prints where it is.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import tempfile
from pathlib import Path

import torch
from torch.utils import cpp_extension

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
SHIM = Path(__file__).resolve().parent / "shim"
KERNELS = ["ntxent/ntxent_cuda.cu", "swd/swd_cuda.cu", "kmeans/kmeans_cuda.cu"]
SELFTEST = Path(__file__).resolve().parent / "selftest.cu"  # registers itself under pyclr_emu

_LAUNCH = re.compile(r"(\b[A-Za-z_][\w:]*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*\(", re.S)
_DYNAMIC_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s+)?([\w:][\w:\s]*?)\s+(\w+)\s*\[\s*\]\s*;"
)
_STATIC_SHARED = re.compile(r"__shared__\s+([\w:][\w:\s]*?)\s+(\w+)\s*((?:\[[^\]]+\]\s*)*);")
_REGISTRATION = re.compile(r"TORCH_LIBRARY_IMPL\(\s*pyclr\s*,\s*CUDA\s*,\s*(\w+)\s*\)")


def rewrite(source: str, name: str, registrations: int = 1) -> str:
    """The emulator's C++ version of one .cu file's text, which has ``registrations``
    ``TORCH_LIBRARY_IMPL(pyclr, CUDA, m)`` blocks."""
    launches = source.count("<<<")
    out, n = _LAUNCH.subn(r"::pyclr_emu::launcher(\1, \2)(", source)
    if n != launches:
        raise RuntimeError(f"{name}: rewrote {n} of {launches} kernel launches")
    out = _DYNAMIC_SHARED.sub(
        r"\1* \2 = reinterpret_cast<\1*>(::pyclr_emu::dynamic_shared());", out
    )
    out = _STATIC_SHARED.sub(
        r"auto& \2 = ::pyclr_emu::shared_var<\1 \3>([] { static const char key = 0; return &key; }());",
        out,
    )
    if "__shared__" in out:
        raise RuntimeError(f"{name}: a __shared__ declaration was not rewritten")
    out = out.replace(".is_cuda()", ".is_cpu()")
    out, n = _REGISTRATION.subn(r"[[maybe_unused]] static void pyclr_emu_unregistered(torch::Library& \1)", out)
    if n != registrations:
        raise RuntimeError(f"{name}: expected {registrations} TORCH_LIBRARY_IMPL(pyclr, CUDA, m), "
                           f"found {n}")
    # The emulator's definitions come after the file's own includes (so that torch's headers
    # never see its macros) and before any device code.
    includes = list(re.finditer(r"^#include .*$", out, re.M))
    at = includes[-1].end() if includes else 0
    return out[:at] + "\n#include <pyclr_emu.h>\n" + out[at:]


def _source_dir() -> Path:
    tag = hashlib.sha1(str(ROOT).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"pyclr_emu_src_{tag}"


def _write_if_changed(path: Path, text: str) -> None:
    # An unchanged file keeps its mtime, so ninja does not recompile it.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def sources() -> list[str]:
    """Writes the rewritten kernels next to the runtime and returns the files to compile."""
    out_dir = _source_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for rel in KERNELS:
        text = rewrite((CSRC / rel).read_text(), rel)
        # The .cu file's own relative includes resolve through the include path below.
        path = out_dir / (Path(rel).stem + ".cpp")
        _write_if_changed(path, text)
        files.append(str(path))
    path = out_dir / "selftest.cpp"
    _write_if_changed(path, rewrite(SELFTEST.read_text(), SELFTEST.name, registrations=0))
    files.append(str(path))
    files.append(str(SHIM / "pyclr_emu_runtime.cpp"))
    return files


def cuda_include() -> Path:
    """The CUDA toolkit's include directory (its headers are all the emulator needs of it)."""
    homes = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda",
             cpp_extension.CUDA_HOME]
    for home in filter(None, homes):
        if (Path(home) / "include" / "cuda_bf16.h").exists():
            return Path(home) / "include"
    raise RuntimeError("the CUDA toolkit's headers are needed: no include/cuda_bf16.h under "
                       "CUDA_HOME, CUDA_PATH or /usr/local/cuda")


def build(verbose: bool = False):
    """Compiles (when anything changed) and loads the emulated kernels."""
    include = cuda_include()
    flags = ["-O2", "-std=c++20", "-DWITH_CUDA", "-fno-strict-aliasing", "-w"]
    sanitize = os.environ.get("PYCLR_EMU_SANITIZE", "")
    if sanitize:
        flags += [f"-fsanitize={sanitize}", "-g", "-fno-omit-frame-pointer"]
    kernel_dirs = sorted({str(CSRC / Path(rel).parent) for rel in KERNELS})
    name = "pyclr_emu" + (f"_{sanitize}" if sanitize else "")
    # One build directory per checkout and variant: two checkouts never rebuild each other's.
    build_dir = _source_dir().with_name(_source_dir().name.replace("_src_", f"_build_{name}_"))
    build_dir.mkdir(parents=True, exist_ok=True)
    cpp_extension.load(
        name=name,
        build_directory=str(build_dir),
        sources=sources(),
        extra_include_paths=[str(SHIM), *kernel_dirs, str(CSRC), str(include)],
        extra_cflags=flags,
        extra_ldflags=[f"-fsanitize={sanitize}"] if sanitize else [],
        is_python_module=False,
        verbose=verbose,
    )
    _define_operators()
    return torch.ops.pyclr_emu


_LIBRARY = None


def _define_operators() -> None:
    """Declares torch.ops.pyclr_emu.<op> with the schema of torch.ops.pyclr.<op>, once; the
    library just loaded registers their CPU kernels."""
    global _LIBRARY
    if _LIBRARY is not None:
        return
    ops = importlib.import_module("pyclr._ops")
    library = torch.library.Library("pyclr_emu", "FRAGMENT")
    for name in ops.OPERATORS:
        schema = str(getattr(torch.ops.pyclr, name).default._schema)
        library.define(schema.split("::", 1)[1])
    _LIBRARY = library


if __name__ == "__main__":
    build(verbose=True)
    print("built: torch.ops.pyclr_emu.{nt_xent_forward, nt_xent_backward, swd_forward, kmeans_step, "
          "selftest}")
