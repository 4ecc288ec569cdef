"""The `pyclr` command: train, probe and look inside contrastive encoders, and time the fused losses."""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _info(args) -> int:
    from ._ops import format_build_info

    print(format_build_info())
    return 0


def _loss(args) -> int:
    """The fused NT-Xent loss on random embeddings: loss, forward+backward time, peak memory."""
    from . import losses
    from ._ops import format_build_info

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("pyclr loss: --device cuda was asked for but no GPU is visible", file=sys.stderr)
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


def _train(args) -> int:
    from .train.experiment import run_experiment
    from .train.presets import resolve_config

    flags = [f"train.{name}={value}" for name, value in
             (("epochs", args.epochs), ("batch_size", args.batch_size), ("seed", args.seed)) if value is not None]
    config = resolve_config(args.config, overrides=flags + args.set)  # --set wins over the flags
    report = run_experiment(config, args.out, device=args.device, resume=not args.no_resume,
                            progress=not args.quiet, baseline=not args.no_baseline)
    if _is_main_process():  # under torchrun, rank 0 reports for all
        _print_report(report, args.out)
    return 0


def _is_main_process() -> bool:
    from .train.distributed import DistributedContext

    return DistributedContext.from_environment().is_main  # the group run_experiment joined


def _eval(args) -> int:
    from .train.experiment import evaluate_run

    result = evaluate_run(args.run_dir, device=args.device)
    print(f"step {result['step']}: linear probe accuracy {result['probe_accuracy']:.4f}")
    return 0


def _demo(args) -> int:
    """The README's main job: SimCLR on embedded MultiDigit data, probed against a random encoder."""
    from ._ops import format_build_info
    from .train.experiment import CONFIG, config_changes, read_run_config, run_experiment
    from .train.presets import PRESETS, resolve_config

    config = {"preset": "demo"}
    if args.epochs is not None:
        config["train"] = {"epochs": args.epochs}
    # the demo starts over in its folder each time: never in another run's (a config other than
    # the demo's, whatever its epochs)
    existing = os.path.join(args.out, CONFIG)
    if os.path.exists(existing) and config_changes(read_run_config(existing), resolve_config(config),
                                                   free={"train.epochs"}):
        raise ValueError(f"--out: {args.out} holds another run (its {CONFIG} is not the demo's); the "
                         "demo starts over only in a folder of its own: pick another --out")
    main_process = _is_main_process()  # under torchrun, rank 0 prints for all
    if main_process:
        print(format_build_info())
        print(f"\npyclr demo: {PRESETS['demo']['description']}\nrun folder: {args.out}\n")
    report = run_experiment(config, args.out, device=args.device, resume=False, progress=not args.quiet)
    if not main_process:
        return 0
    _print_report(report, args.out)
    _demo_masks(report["config"], args.out, args.device)
    return 0


def _demo_masks(cfg: dict, out: str, device) -> None:
    """Clusters the trained encoder's feature maps of a few held-out canvases (pyclr.render)."""
    import os

    try:
        import cv2  # noqa: F401
    except ImportError:
        print("masks: skipped (pip install opencv-python-headless to render them)")
        return
    from .render import render_masks
    from .train.experiment import load_run_encoder
    from .train.presets import build_dataset

    encoder, _, _ = load_run_encoder(out)
    data = build_dataset(cfg["eval"]["test"])
    images = torch.stack([data[i][0] for i in range(4)]).expand(-1, 3, -1, -1)  # grey as RGB
    result = render_masks(encoder, images, taps=("conv1", "conv2", "conv3"), ks=(2, 3, 4), normalize=False,
                          device=device, out_dir=os.path.join(out, "masks"), names=[f"digit{i}" for i in range(4)])
    print(f"masks: {len(result.paths)} figures (rows conv1-conv3, columns k = 2, 3, 4) in {os.path.join(out, 'masks')}")


def _print_report(report: dict, out: str) -> None:
    last = report["last_epoch"] or {}
    print(f"trained {report['epochs']} epochs in {report['train_time_s']:.1f} s on "
          f"{report['device']}: final loss {last.get('loss', float('nan')):.4f}, "
          f"{last.get('images_per_s', float('nan')):.0f} images/s")
    if "probe_accuracy" in report:
        print(f"linear probe accuracy   {report['probe_accuracy']:.4f}  (trained encoder)")
    if "random_encoder_probe_accuracy" in report:
        print(f"                        {report['random_encoder_probe_accuracy']:.4f}  (random encoder, same probe)")
    print(f"run folder: {out} (config.json, metrics.jsonl, checkpoint.pt, report.json)")


def _positive_int(text: str) -> int:
    value = int(text) if _INTEGER.fullmatch(text) else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _assignment(text: str) -> str:
    """``--set``'s form (section.key=value, a known section) as a usage error; the value and
    the key are checked with the whole config (pyclr.train.presets.resolve_config)."""
    from .train.presets import parse_assignment

    try:
        parse_assignment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--set: ")) from None
    return text


# An integer as written in decimal: int() also takes 1_0, surrounding spaces and other scripts' digits.
_INTEGER = re.compile(r"[-+]?[0-9]+")


def _integer(text: str) -> int:
    """The argparse type of every integer option of the ``pyclr`` command."""
    if not _INTEGER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(text)


def _seed(text: str) -> int:
    """The argparse type of every --seed: an integer in [0, 2**63 - 1] (a larger one failed in
    torch.Generator.manual_seed with "Overflow when unpacking long long")."""
    from .train.loop import SEED_MAX  # pyclr.train's bound

    value = _integer(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**63 - 1], got {text!r}")
    return value


EPILOG = """examples:
  pyclr demo                                   the main job on embedded data (a CPU minute)
  pyclr train multidigit --out runs/md --epochs 50 --set train.lr=0.3
  pyclr eval runs/md                           linear probe of the run's checkpoint
  pyclr masks --checkpoint runs/md --k 2,4,8   cluster masks of its block groups (PNG)
  pyclr loss --batch-size 8192 --dtype bfloat16
  torchrun --nproc_per_node 2 -m pyclr train ... (several processes or GPUs)"""


def parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: a prefix (--epoch for --epochs) that works today would break, or
    # change meaning, when an option is added
    p = argparse.ArgumentParser(prog="pyclr", description=__doc__, epilog=EPILOG, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", allow_abbrev=False, help="version, torch, which kernels were built, visible GPU").set_defaults(run=_info)
    from .train.presets import PRESETS

    train = sub.add_parser("train", allow_abbrev=False, help="train from a preset or a JSON/YAML config, then probe",
                           description="presets: " + "; ".join(f"{k}: {v['description']}" for k, v in PRESETS.items()))
    train.add_argument("config", help=f"a preset ({', '.join(PRESETS)}) or a JSON/YAML file (a preset's "
                                       "name is the preset: write ./NAME for a file of that name)")
    train.add_argument("--out", required=True, help="the run folder (checkpoint, metrics, report)")
    train.add_argument("--epochs", type=_positive_int, help="train.epochs (default: the preset's)")
    train.add_argument("--batch-size", type=_positive_int, help="train.batch_size, images per step over all "
                                                                  "ranks (default: the preset's)")
    train.add_argument("--seed", type=_seed, help="train.seed (default: the preset's)")
    train.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", type=_assignment,
                       help="override any option, e.g. --set dataset.root=data/ --set train.lr=0.5 "
                            "--set eval.train.size=500 (values parse as JSON when they can); a new encoder or "
                            "dataset name, or augment policy, starts that section afresh")
    train.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if visible)")
    train.add_argument("--no-resume", action="store_true", help="start over even if the run folder has a checkpoint")
    train.add_argument("--no-baseline", action="store_true", help="skip the random-encoder probe")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=_train)
    evaluate = sub.add_parser("eval", allow_abbrev=False, help="linear probe of a run folder's checkpoint")
    evaluate.add_argument("run_dir", help="a folder that `pyclr train` wrote")
    evaluate.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if visible)")
    evaluate.set_defaults(run=_eval)
    from .render.cli import add_parser as add_masks_parser

    add_masks_parser(sub)
    demo = sub.add_parser("demo", allow_abbrev=False, help="the main job: SimCLR on embedded MultiDigit data, probe, masks (under a CPU minute)")
    demo.add_argument("--out", default="pyclr-demo", help="run folder (default ./pyclr-demo)")
    demo.add_argument("--epochs", type=_positive_int, default=None, help="default: the demo preset's")
    demo.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if visible)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)
    loss = sub.add_parser("loss", allow_abbrev=False, help="time the fused NT-Xent loss on random data")
    loss.add_argument("--batch-size", type=_positive_int, default=2048, help="N per view (default 2048)")
    loss.add_argument("--dim", type=_positive_int, default=128, help="embedding size d (default 128)")
    loss.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="default float32")
    loss.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if visible")
    loss.add_argument("--temperature", type=_positive_float, default=0.5, help="default 0.5")
    loss.add_argument("--repeats", type=_positive_int, default=5, help="timed forward+backward passes (default 5)")
    loss.add_argument("--seed", type=_seed, default=0, help="seed of the random embeddings (default 0)")
    loss.set_defaults(run=_loss)
    return p


def _after_interrupt(args) -> str:
    """What running the command again does: `pyclr train` resumes from the run folder's
    checkpoint when there is one (none yet before the first step); the demo starts over."""
    if args.command == "demo":
        return " (the demo starts over when run again)"
    if args.command == "train":
        from .train.checkpoint import CHECKPOINT

        if os.path.exists(os.path.join(args.out, CHECKPOINT)):
            return " (a checkpoint was saved in the run folder; run again to resume)"
        return " (before the first step: no checkpoint was saved)"
    return ""


def _one_line_warning(command: str):
    """A warning as one line, ``pyclr COMMAND: Category: message``, not Python's file, line
    number and source line (which read as a crash to someone at a shell)."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"pyclr {command}: {category.__name__}: {message}", file=sys.stderr if file is None else file)
    return show


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # restores showwarning afterwards
            warnings.showwarning = _one_line_warning(args.command)
            code = args.run(args)
        from .train.distributed import end_process_group

        end_process_group()  # under torchrun: once every rank is done, the group it started ends
        return code
    except KeyboardInterrupt:
        print(f"pyclr {args.command}: interrupted{_after_interrupt(args)}", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError, TypeError, ImportError, OSError, FloatingPointError, OverflowError) as exc:
        # torch's C++ errors carry a backtrace of C++ frames after the message: not for a user
        message = str(exc).split("\nException raised from ")[0]
        print(f"pyclr {args.command}: {message}", file=sys.stderr)
        return 1
