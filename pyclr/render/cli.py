"""``pyclr masks``: cluster assignment masks of an encoder's local features, as PNG figures.

Added to the ``pyclr`` command by ``pyclr.cli`` through :func:`add_parser`."""
from __future__ import annotations

import argparse
import os
import sys

from ..cli import _INTEGER, _integer, _seed
from .labels import UPSAMPLE_MODES
from .masks import METHODS

DESCRIPTION = """Clusters the l2-normalised per-pixel features of an encoder's block groups (one
forward pass) for every k, colours the clusters consistently across k, overlays them on the
grey-scale images and writes one figure per image (rows: taps, columns: k) as PNG into --out.
Without --image: the natural photographs shipped by scikit-image and scikit-learn. Without
--checkpoint: a randomly initialised ResNet-50 (what the architecture alone gives)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Adds the ``masks`` subcommand to ``subparsers`` (from ``add_subparsers``); it runs
    :func:`run` through ``set_defaults(run=run)``, as the other subcommands do."""
    p = subparsers.add_parser("masks", help="cluster assignment masks of an encoder's local features (PNG)",
                              description=DESCRIPTION, allow_abbrev=False)
    p.add_argument("--checkpoint", metavar="PATH",
                   help="a pyclr run folder (or its checkpoint.pt) or a ResNet state dict in torchvision's "
                        "layout; default: a randomly initialised ResNet-50")
    p.add_argument("--image", nargs="+", action="extend", metavar="PATH",
                   help="image files (default: the embedded natural images)")
    p.add_argument("--taps", type=_names, default="block2,block3,block4",
                   help="block groups, comma-separated (default block2,block3,block4)")
    p.add_argument("--k", type=_ints, default="2,4,6,8", help="cluster counts, comma-separated (default 2,4,6,8)")
    p.add_argument("--method", type=_names, default="kmeans",
                   help=f"{', '.join(METHODS)}, or several comma-separated (one row per tap and method)")
    p.add_argument("--cross-image", action="store_true",
                   help="cluster the pixels of all images together (shared colours)")
    p.add_argument("--out", default="pyclr-masks", metavar="DIR", help="output folder (default ./pyclr-masks)")
    p.add_argument("--size", type=_integer, default=448, help="images are centre-cropped and resized to SIZE² (448)")
    p.add_argument("--upsample", choices=UPSAMPLE_MODES, default="nearest",
                   help="label-map upsampling (default nearest)")
    p.add_argument("--seed", type=_seed, default=0, help="clustering seed, and the random encoder's")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if visible)")
    p.add_argument("--raw-pixels", action="store_true", help="add the K-Means row on raw pixels (the baseline)")
    p.add_argument("--normalize", choices=("auto", "imagenet", "none"), default="auto",
                   help="input standardisation; auto: none with --checkpoint (pyclr runs and converted "
                        "SimCLR checkpoints take [0, 1] images), ImageNet mean/std for the random "
                        "encoder; use imagenet for torchvision's supervised weights")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    """Runs ``pyclr masks`` with parsed ``args``; prints the figures' paths. Bad input raises
    ValueError / ImportError / OSError, which ``pyclr.cli.main`` reports in one line."""
    import torch

    from .masks import _check_ks, _check_methods, default_encoder, render_masks

    _check_methods(args.method)  # before the images and the encoder are loaded
    _check_ks(args.k)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out: {args.out!r} exists and is not a folder")
    images, names = _images(args.image, args.size)
    encoder = default_encoder(args.checkpoint, seed=args.seed)
    normalize = args.normalize == "imagenet" or (args.normalize == "auto" and args.checkpoint is None)
    if args.normalize == "auto" and args.checkpoint is not None:
        print("pyclr masks: inputs in [0, 1], not standardised (--normalize auto with a checkpoint; "
              "pass --normalize imagenet for torchvision's supervised weights)", file=sys.stderr)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    result = render_masks(encoder, images, taps=args.taps, ks=args.k, method=args.method,
                          cross_image=args.cross_image, upsample=args.upsample, seed=args.seed,
                          device=device, out_dir=args.out, raw_pixel_baseline=args.raw_pixels,
                          names=names, normalize=normalize)
    for path in result.paths.values():
        print(path)
    return 0


def _images(paths, size):
    from .masks import image_names, load_images, square_image

    if paths:
        return load_images(paths, size), image_names(paths)
    import torch

    from ..data import natural_images

    found = natural_images()
    return torch.stack([square_image(im, size) for im in found.values()]), list(found)


def _items(text: str, kind: str) -> list:
    """The comma-separated items of ``text``: none empty (``2,,4`` is a typo, not [2, 4]), none
    repeated (a repeat would draw the same row or column twice)."""
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected comma-separated {kind} without empty items, got {text!r}")
    if len(set(items)) != len(items):
        raise argparse.ArgumentTypeError(f"expected comma-separated {kind} without repeats, got {text!r}")
    return items


def _names(text: str) -> list:
    return _items(text, "names")


def _ints(text: str) -> list:
    items = _items(text, "integers")
    if not all(_INTEGER.fullmatch(t) for t in items):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    values = [int(t) for t in items]
    if len(set(values)) != len(values):  # 2,02
        raise argparse.ArgumentTypeError(f"expected comma-separated integers without repeats, got {text!r}")
    return values
