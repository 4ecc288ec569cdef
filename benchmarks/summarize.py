"""Prints pytest-benchmark JSON as a table: median time, speed-up over the plain-PyTorch
reference of the same case, peak memory and, given the device's measured ceilings
(device_ceilings.py), the floor and the fraction of it reached.

    python benchmarks/summarize.py bench_*.json [--ceilings ceilings.json]

A benchmark's extra_info names its case (device, m, d, dtype, ...), its ``impl`` and
optionally ``flops`` (arithmetic it must do) and ``bytes`` (device memory it must move). fp32
cases on a GPU are floored at a third of the tf32 rate (the kernels run fp32 as 3xTF32), "tf32"
cases (fp32 inputs, TF32 allowed) at the tf32 rate.
"""
import argparse
import json

# measurements and derived rates, not part of a case's identity
META = {"impl", "device_name", "torch", "peak_extra_mib", "tflops", "flops", "bytes", "images_per_s",
        "msorted_per_s", "forward_s"}
BASELINES = ("reference", "eager", "torchvision", "plain")  # what "vs ref" compares with, first found


def floor_ms(info: dict, ceilings: dict):
    ceilings = ceilings.get(info.get("device"))
    if not ceilings:
        return None
    if info["device"] == "cuda":
        rate = {"bf16": ceilings["tflops_bf16"], "fp16": ceilings["tflops_fp16"],
                "fp32": ceilings["tflops_tf32"] / 3, "tf32": ceilings["tflops_tf32"]}.get(info.get("dtype"))
    else:
        rate = ceilings["tflops_fp32"] if info.get("dtype") == "fp32" else None
    times = []
    if info.get("flops") and rate:
        times.append(info["flops"] / (rate * 1e12) * 1e3)
    if info.get("bytes"):
        times.append(info["bytes"] / (ceilings["copy_gbps"] * 1e9) * 1e3)
    return max(times) if times else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", nargs="+", help="pytest-benchmark JSON files (their rows are joined)")
    parser.add_argument("--ceilings")
    args = parser.parse_args()
    ceilings = json.load(open(args.ceilings)) if args.ceilings else {}
    rows = []
    for b in (b for path in args.bench for b in json.load(open(path))["benchmarks"]):
        info = b["extra_info"]
        case = (b["name"].split("[")[0],) + tuple(sorted((k, _hashable(v)) for k, v in info.items()
                                                           if k not in META))
        rows.append((case, info, b["stats"]["median"] * 1e3))
    ref = {}
    for baseline in reversed(BASELINES):
        ref.update({case: (ms, info) for case, info, ms in rows if info.get("impl") == baseline})
    print(f"{'benchmark':34} {'case':44} {'impl':10} {'ms':>9} {'vs ref':>7} {'peak MiB':>9} {'floor ms':>9} {'of floor':>8}")
    for case, info, ms in rows:
        # lists (a figure's taps and ks) are settings every row shares: left out of the label
        label = " ".join(f"{v}" for k, v in case[1:] if k not in ("device", "backend") and not isinstance(v, tuple))
        speed = f"{_speed_up(ms, info, *ref[case]):.2f}x" if case in ref else "-"
        floor = floor_ms(info, ceilings)
        impl = info.get("impl", info.get("backend", ""))
        print(f"{case[0][:34]:34} {(info.get('device', '') + ' ' + label)[:44]:44} {impl:10} "
              f"{ms:>9.2f} {speed:>7} {info.get('peak_extra_mib', float('nan')):>9.1f} "
              f"{floor if floor else float('nan'):>9.3f} {f'{floor / ms:.0%}' if floor else '-':>8}")


def _speed_up(ms, info, ref_ms, ref_info) -> float:
    """Over the baseline: by images/s where both measured it (a training run's wall time
    includes building the model and the loader), else by time."""
    if info.get("images_per_s") and ref_info.get("images_per_s"):
        return info["images_per_s"] / ref_info["images_per_s"]
    return ref_ms / ms


def _hashable(value):
    """extra_info values as dictionary keys: lists (e.g. a figure's ks) become tuples."""
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


if __name__ == "__main__":
    main()
