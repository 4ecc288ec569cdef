"""pyclr's own kernel tests, re-run with the CUDA kernels' code running in the CPU emulator.

Every CPU case of tests/losses and tests/cluster whose dtype the CUDA kernels take (float32,
bfloat16, float16) then calls torch.ops.pyclr_emu, that is csrc/*/*_cuda.cu as a GPU would run
it, within the emulator's model (shim/pyclr_emu.h). Once with blocks and threads in launch
order, once reversed, so that a thread reading what another wrote without a barrier between
reads the shared-memory poison in one of the two.
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


@pytest.mark.skipif(os.environ.get("PYCLR_EMULATE_CUDA") == "1", reason="already emulating")
@pytest.mark.parametrize("order,suites", [("forward", ALL_SUITES), ("reverse", KERNEL_SUITES)])
def test_suites_pass_on_emulated_cuda_kernels(emu, order, suites):
    # `emu` builds the emulated kernels here, so the runs below find them built
    env = {**os.environ, "PYCLR_EMULATE_CUDA": "1", "PYCLR_EMU_THREAD_ORDER": order,
           "PYCLR_EMU_BLOCK_ORDER": order}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", *suites],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:]
    counts = re.search(r"emulated CUDA kernel calls: (.*)", output)
    assert counts, output[-3000:]
    calls = dict(re.findall(r"(\w+) (\d+)", counts.group(1)))
    assert all(int(n) > 0 for n in calls.values()), f"an operator never reached the emulator: {calls}"
