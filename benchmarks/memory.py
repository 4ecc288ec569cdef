"""Peak memory of one benchmark step, the same way in every suite: on a GPU the caching
allocator's peak over one more run; on the CPU the resident high-water mark of the step run
again in a fresh process (this one has grown by then)."""
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def cuda_peak_mib(run) -> float:
    """Memory allocated beyond what was live before, at the peak of ``run()``."""
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def cpu_peak_mib(setup: str, step: str) -> float:
    """Resident memory growth of ``step`` after ``setup`` (Python source, run with this folder
    on sys.path), in a fresh process."""
    code = (f"import sys\nsys.path.insert(0, {HERE!r})\nfrom memory import rss_kib\n{setup}\n"
            "open('/proc/self/clear_refs', 'w').write('5')  # reset the high-water mark\n"
            f"before = rss_kib('VmRSS')\n{step}\nprint((rss_kib('VmHWM') - before) / 1024)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def record_peak(benchmark, on_gpu: bool, run, cpu_peak=None) -> None:
    """extra_info's peak_extra_mib and device_name; ``cpu_peak()`` gives the CPU figure (no
    figure without it)."""
    if on_gpu:
        benchmark.extra_info["peak_extra_mib"] = cuda_peak_mib(run)
        benchmark.extra_info["device_name"] = torch.cuda.get_device_name()
        return
    if cpu_peak is not None:
        benchmark.extra_info["peak_extra_mib"] = cpu_peak()
    benchmark.extra_info["device_name"] = f"cpu x{torch.get_num_threads()} threads"
