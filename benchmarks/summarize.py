"""Prints a pytest-benchmark JSON as a table: time, TFLOP/s, peak memory, speed-up over the reference."""
import json
import sys


def main(path: str) -> None:
    rows = [b["extra_info"] | {"ms": b["stats"]["mean"] * 1e3} for b in json.load(open(path))["benchmarks"]]
    ref = {(r["device"], r["m"], r["d"], r["dtype"]): r["ms"] for r in rows if r["impl"] == "reference"}
    print(f"{'device':28} {'M':>8} {'d':>4} {'dtype':5} {'impl':10} {'ms':>9} {'TFLOP/s':>8} {'peak MiB':>9} {'speed-up':>8}")
    for r in rows:
        base = ref.get((r["device"], r["m"], r["d"], r["dtype"]))
        speedup = f"{base / r['ms']:.2f}x" if base else "-"
        print(f"{r['device_name'][:28]:28} {r['m']:>8} {r['d']:>4} {r['dtype']:5} {r['impl']:10} "
              f"{r['ms']:>9.2f} {r['tflops']:>8.3f} {r['peak_extra_mib']:>9.1f} {speedup:>8}")


if __name__ == "__main__":
    main(sys.argv[1])
