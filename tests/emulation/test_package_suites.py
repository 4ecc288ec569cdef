"""pyclr's own kernel tests, re-run with the CUDA kernels' code running in the CPU emulator.

Every CPU case of tests/losses and tests/cluster whose dtype the CUDA kernels take (float32,
bfloat16, float16) then calls torch.ops.pyclr_emu, that is csrc/*/*_cuda.cu as a GPU would run
it, within the emulator's model (shim/pyclr_emu.h). Once with blocks and threads in launch
order, once reversed (so that a thread reading what another wrote without a barrier between
reads the shared-memory poison in one of the two runs) and built with AddressSanitizer, which
then checks every access of the kernels to global and shared memory (compute-sanitizer's
memcheck, as far as a CPU can tell).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALL_SUITES = ["tests/losses", "tests/cluster"]
KERNEL_SUITES = ["tests/losses/test_ntxent.py", "tests/losses/test_generalized.py",
                 "tests/losses/test_swd.py", "tests/cluster/test_kmeans_step.py"]


def asan_environment():
    """What a process needs to load the AddressSanitizer build, or None where gcc has no ASan.
    libstdc++ is preloaded too: ASan intercepts C++ throws only if it finds it at start-up."""
    libs = []
    for name in ("libasan.so", "libstdc++.so"):
        path = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True,
                              text=True).stdout.strip()
        if not os.path.isabs(path):
            return None
        libs.append(path)
    return {"PYCLR_EMU_SANITIZE": "address", "LD_PRELOAD": " ".join(libs),
            "ASAN_OPTIONS": "detect_leaks=0"}


@pytest.fixture(scope="module")
def asan_env():
    env = asan_environment()
    if env is None:
        pytest.skip("gcc without AddressSanitizer")
    # built here, once, so that a failure to build is not mistaken for a test failure
    subprocess.run([sys.executable, "-m", "tests.emulation.build"], cwd=ROOT,
                   env={**os.environ, **env}, check=True, capture_output=True, timeout=1800)
    return env


def run_suites(suites, env, operators=None):
    """Runs the suites on the emulated kernels; each of ``operators`` (default: all) must have
    reached the emulator."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", *suites],
        cwd=ROOT, env={**os.environ, "PYCLR_EMULATE_CUDA": "1", **env}, capture_output=True,
        text=True, timeout=3600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    counts = re.search(r"emulated CUDA kernel calls: (.*)", output)
    assert counts, output[-3000:]
    calls = dict(re.findall(r"(\w+) (\d+)", counts.group(1)))
    expected = operators or list(calls)
    assert all(int(calls[op]) > 0 for op in expected), f"an operator never reached the emulator: {calls}"


@pytest.mark.skipif(os.environ.get("PYCLR_EMULATE_CUDA") == "1", reason="already emulating")
def test_suites_pass_on_emulated_cuda_kernels(emu):
    # `emu` builds the emulated kernels here, so the run below finds them built
    run_suites(ALL_SUITES, {})


@pytest.mark.skipif(os.environ.get("PYCLR_EMULATE_CUDA") == "1", reason="already emulating")
def test_kmeans_step_suite_passes_on_the_two_pass_kernel(emu):
    """The K-Means step has two CUDA kernels; the suite's shapes mostly take the one-pass one,
    so the two-pass one runs them all once more, forced."""
    run_suites(["tests/cluster/test_kmeans_step.py"], {"PYCLR_KMEANS_TWO_PASS": "1"}, ["kmeans_step"])


@pytest.mark.skipif(os.environ.get("PYCLR_EMULATE_CUDA") == "1", reason="already emulating")
def test_kernel_suites_pass_reversed_under_address_sanitizer(asan_env):
    run_suites(KERNEL_SUITES, {**asan_env, "PYCLR_EMU_THREAD_ORDER": "reverse",
                               "PYCLR_EMU_BLOCK_ORDER": "reverse"})


def test_address_sanitizer_build_reports_a_read_past_the_end(asan_env):
    """The sanitized build is not vacuous: a kernel reading one element past its input aborts
    with AddressSanitizer's report."""
    code = ("import sys, torch; sys.path.insert(0, '.'); from tests.emulation.build import build; "
            "build().selftest('past_the_end', torch.zeros(256))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **asan_env},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "heap-buffer-overflow" in proc.stderr and "past_the_end_kernel" in proc.stderr, proc.stderr[-3000:]
