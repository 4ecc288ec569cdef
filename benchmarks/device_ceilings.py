"""Measures the two ceilings of the machine this runs on (METHOD.md): matrix-product rate
per dtype and memory-to-memory copy bandwidth, for the CPU (all of torch's threads) and the
GPU when there is one. Prints JSON keyed by device; benchmarks/summarize.py turns a
benchmark's FLOPs and bytes into a floor with it."""
import json
import time

import torch


def cpu_median_ms(fn, reps=7):
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def cpu_ceilings():
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    src = torch.empty(2**28, dtype=torch.uint8).random_()
    dst = torch.empty_like(src)
    return {
        "device_name": f"cpu x{torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "tflops_fp32": 2 * 2048**3 / cpu_median_ms(lambda: a @ b) / 1e9,
        "copy_gbps": 2 * 2**28 / cpu_median_ms(lambda: dst.copy_(src)) / 1e6,
    }


def median_ms(fn, reps=20):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def gemm_tflops(dtype, tf32=False, n=8192):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    a, b = (torch.randn(n, n, device="cuda").to(dtype) for _ in range(2))
    ms = median_ms(lambda: a @ b)
    torch.backends.cuda.matmul.allow_tf32 = False
    return 2 * n**3 / ms / 1e9


def copy_gbps(nbytes=2**31):
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    return 2 * nbytes / median_ms(lambda: dst.copy_(src)) / 1e6  # read + write


def cuda_ceilings():
    return {
        "device_name": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "sm_count": torch.cuda.get_device_properties(0).multi_processor_count,
        "tflops_bf16": gemm_tflops(torch.bfloat16),
        "tflops_fp16": gemm_tflops(torch.float16),
        "tflops_tf32": gemm_tflops(torch.float32, tf32=True),
        "tflops_fp32": gemm_tflops(torch.float32),
        "copy_gbps": copy_gbps(),
    }


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()  # --help, and no stray arguments
    result = {"cpu": cpu_ceilings()}
    if torch.cuda.is_available():
        result["cuda"] = cuda_ceilings()
    print(json.dumps(result, indent=1))
