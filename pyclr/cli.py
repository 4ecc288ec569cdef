"""The `pyclr` command."""
from __future__ import annotations

import argparse
import sys
import time

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _info(args) -> int:
    from ._ops import format_build_info

    print(format_build_info())
    return 0


def _demo(args) -> int:
    """The fused NT-Xent loss on random embeddings: loss, forward+backward time, peak memory."""
    from . import losses
    from ._ops import format_build_info

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("pyclr demo: --device cuda was asked for but no GPU is visible", file=sys.stderr)
        return 2
    gen = torch.Generator(device=device).manual_seed(args.seed)
    shape = (args.batch_size, args.dim)
    z1 = torch.randn(shape, generator=gen, device=device, dtype=DTYPES[args.dtype]).requires_grad_()
    z2 = torch.randn(shape, generator=gen, device=device, dtype=DTYPES[args.dtype]).requires_grad_()

    def step():
        loss = losses.nt_xent(z1, z2, temperature=args.temperature)
        loss.backward()
        return loss

    loss = step()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.repeats):
        loss = step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    ms = (time.perf_counter() - start) / args.repeats * 1e3
    print(format_build_info())
    print(f"\nfused NT-Xent on random data: M = {2 * args.batch_size} rows, d = {args.dim}, "
          f"{args.dtype}, {device}, temperature {args.temperature}")
    print(f"loss                 {loss.item():.6f}")
    print(f"forward+backward     {ms:.2f} ms (mean of {args.repeats})")
    if device.type == "cuda":
        print(f"peak GPU memory      {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyclr", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, torch, which kernels were built, visible GPU").set_defaults(run=_info)
    demo = sub.add_parser("demo", help="run the fused NT-Xent loss on random data and time it")
    demo.add_argument("--batch-size", type=_positive_int, default=2048, help="N per view (default 2048)")
    demo.add_argument("--dim", type=_positive_int, default=128, help="embedding size d (default 128)")
    demo.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    demo.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if visible")
    demo.add_argument("--temperature", type=_positive_float, default=0.5)
    demo.add_argument("--repeats", type=_positive_int, default=5)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (RuntimeError, ValueError, TypeError) as exc:
        print(f"pyclr {args.command}: {exc}", file=sys.stderr)
        return 1
