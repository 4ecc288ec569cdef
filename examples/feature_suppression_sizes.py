"""Intriguing Properties of Contrastive Losses, Table 4: the presence of a dominant object
suppresses the learning of features of smaller objects. Two MNIST digits on a 112x112
canvas, the first 20x20, the second s x s with s in {20, 30, ..., 80}; after training, two
linear probes read the first and the second digit's class off the frozen representation.
The paper's claim: as the second digit grows, SimCLR's probe on the small first digit
collapses (tau 0.2: 98.7% at s = 20, 87.5% at 50, 24.9% at 60, 20.3% at 80; tau 0.05 later and
less: 39.9% at 80) while the second digit stays near 98-99%; a supervised network keeps both
near 99%, and a random network gets 16-29%.

    python examples/feature_suppression_sizes.py --quick    # 2-core CPU, minutes
    python examples/feature_suppression_sizes.py            # GPU: ResNet-18, 112x112, s = 20..80

For each size: SimCLR (NT-Xent) at tau 0.05 and 0.2, a supervised baseline
(pyclr.train.train_supervised on the set of the canvas's two digits, as multidigit.py's: the
paper's supervised row is near 99% on both digits, which a network trained on one digit's
label alone would not give; the paper's text does not say more), and a randomly initialised
encoder. Each digit is probed on canvases that hold it alone, at its size, at a random
position (pyclr.data.multidigit_eval with digit_size; pyclr.evaluate.linear_probe, fitted on
one set and scored on another): the paper's 1st- and 2nd-digit numbers are identical at
s = 20 for every method, as probes of the same 20x20 single-digit canvases are. (Probed on
the two-digit training canvases, "first" and "second" cannot be told apart when s equals the
first digit's size: even features that hold both classes perfectly then score about 0.53.)
Supervised training uses no augmentation (a crop could drop a labelled digit).

Writes results/feature_suppression_sizes.json and feature_suppression_sizes.png (example
canvases; probe accuracy against the second digit's size beside the paper's). Full mode:
the paper's canvas and sizes with the "multidigit" preset's training (ResNet-18, 20,000
canvases, SimCLR augmentation, LARS, batch 256), shortened to 20 epochs per run so that the
21 runs should fit in about an hour on one H100 (an estimate: not yet run on a GPU); MNIST's
IDX files with --data-root, else the embedded 4,000-digit subset. Quick mode is a
scaled-down stand-in: a 56x56 canvas (half the paper's side), first digit 14x14, second 14 or
42 (0.7 of the paper's 20 and 60: ratios 1 and 3 to the first, the paper's s = 20 and 60,
where its tau 0.2 probe on the first digit falls from 98.7% to 24.9%; relative to the canvas
the digits are 1.4 times the paper's, and 14 + 42 fill the 56-pixel side, so every such pair
touches the canvas edges), pyclr's small ConvNet with global average pooling, 2,048 training
canvases, 8 epochs at batch 64 with Adam, crops of area 0.5-1, the embedded digits.
"""
from __future__ import annotations

import functools
import os
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import pyclr  # noqa: E402
from pyclr.data import InMemory, TwoDigitSizes, multidigit_eval  # noqa: E402
from pyclr.evaluate import extract_features, linear_probe  # noqa: E402
from pyclr.train import train_supervised  # noqa: E402
from pyclr.train.presets import build_augment, build_encoder, build_head, device_of  # noqa: E402

# trained as the MultiDigit experiment trains: one copy of those settings
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from multidigit import training  # noqa: E402

import _common  # noqa: E402

# Table 4 of Intriguing Properties (ResNet-18, first digit 20x20), top-1 % for the
# (first, second) digit at second-digit sizes 20, 30, ..., 80.
PAPER_SIZES = [20, 30, 40, 50, 60, 70, 80]
PAPER = {
    "supervised": {"first": [99.1, 99.2, 99.2, 99.2, 99.1, 99.1, 99.0],
                   "second": [99.1, 99.5, 99.5, 99.6, 99.5, 99.5, 99.6]},
    "simclr_tau0.05": {"first": [97.8, 97.6, 96.2, 96.5, 88.5, 74.5, 39.9],
                       "second": [97.8, 97.9, 97.8, 98.3, 98.2, 97.7, 98.2]},
    "simclr_tau0.2": {"first": [98.7, 98.8, 98.3, 87.5, 24.9, 19.8, 20.3],
                      "second": [98.7, 99.2, 99.2, 99.0, 99.1, 98.9, 99.4]},
    "random_encoder": {"first": [16.5, 16.7, 16.6, 16.6, 16.6, 16.9, 16.5],
                       "second": [16.5, 19.1, 21.9, 24.1, 26.5, 28.1, 29.0]},
}
TEMPERATURES = (0.05, 0.2)
DIGITS = ("first", "second")


def settings(quick: bool) -> dict:
    """Everything a run depends on; quick mode scales each axis down (see the docstring)."""
    # the protocol is named too, so that a stopped run of an older script (probes on the two-digit
    # canvases, one classifier per digit) is not resumed
    protocol = {"probe_canvases": "one digit, at its size", "supervised_label": "digits"}
    if quick:
        return {"canvas": 56, "first_size": 14, "second_sizes": [14, 42], "train_size": 2048,
                "probe_train": 2000, "probe_test": 1000, **training(quick), **protocol}
    return {"canvas": 112, "first_size": 20, "second_sizes": PAPER_SIZES, "train_size": 20000,
            "probe_train": 5000, "probe_test": 2000, **training(quick), **protocol}


def probe_both_digits(encoder, probe_sets: dict, device) -> dict:
    """One linear probe per digit: fitted on single-digit canvases of its size, scored on others
    (once where both digits have one size: their sets are then the same)."""
    done = {}
    for fit, score in dict.fromkeys(probe_sets.values()):
        x, labels = extract_features(encoder, fit, device=device)
        tx, test_labels = extract_features(encoder, score, device=device)
        done[fit, score] = linear_probe(x, labels["label"], tx, test_labels["label"]).accuracy
    return {digit: done[sets] for digit, sets in probe_sets.items()}


def train_encoder(method: str, grid: dict, data, device):
    cfg = grid["config"]
    torch.manual_seed(0)
    encoder = build_encoder(cfg["encoder"])
    if method == "random_encoder":
        return encoder.to(device)
    if method == "supervised":
        return train_supervised(encoder, data, label="digits", num_classes=10, device=device,
                                **grid["supervised"]).encoder
    options = {**cfg["train"], "temperature": float(method.removeprefix("simclr_tau"))}
    return pyclr.train(encoder, data, augment=build_augment(cfg["augment"]), head=build_head(cfg.get("head"), encoder),
                       device=device, progress=False, **options).encoder


def run_size(second: int, grid: dict, root, device, workers, log: _common.RunLog) -> list:
    """Every method at one second-digit size; each is one unit of the run log (the canvases
    built only when one is not reused)."""
    @functools.cache
    def canvases(size, seed, train):
        return InMemory(TwoDigitSizes(second, grid["first_size"], grid["canvas"], size=size, seed=seed, root=root,
                                      train=train), num_workers=workers)

    @functools.cache
    def single(digit_size, size, seed, train):  # the same seeds for both digits: at s = first, one set
        return InMemory(multidigit_eval(canvas=grid["canvas"], size=size, seed=seed, root=root, train=train,
                                        digit_size=digit_size), num_workers=workers)

    def train_and_probe(method):
        data = canvases(grid["train_size"], 0, True)
        probe_sets = {digit: (single(s, grid["probe_train"], 1, True), single(s, grid["probe_test"], 2, False))
                      for digit, s in (("first", grid["first_size"]), ("second", second))}
        started = time.perf_counter()
        accuracy = probe_both_digits(train_encoder(method, grid, data, device), probe_sets, device)
        return {"second_size": second, "method": method, "probe_accuracy": accuracy,
                "time_s": time.perf_counter() - started}

    rows = []
    for method in ("random_encoder", "supervised", *(f"simclr_tau{t}" for t in TEMPERATURES)):
        rows.append(log.unit(f"second{second}/{method}", lambda: train_and_probe(method)))
        accuracy = rows[-1]["probe_accuracy"]
        print(f"second digit {second:3}: {method:16} probe first {accuracy['first']:.4f}, "
              f"second {accuracy['second']:.4f} ({rows[-1]['time_s']:.0f} s)", flush=True)
    return rows


def plot(rows, grid, root, path) -> None:
    """Example canvases (top) and each digit's probe accuracy against the second digit's size,
    as a ratio to the first's so that quick mode's halved lengths line up with the paper's."""
    sizes, first = grid["second_sizes"], grid["first_size"]
    fig = plt.figure(figsize=(9, 6.5))
    layout = fig.add_gridspec(2, 4, height_ratios=[1, 2])
    for i, second in enumerate(sorted({sizes[0], sizes[len(sizes) // 2], sizes[-1]})):
        ax = fig.add_subplot(layout[0, i])
        ax.imshow(TwoDigitSizes(second, first, grid["canvas"], size=1, seed=3, root=root)[0][0][0], cmap="gray")
        ax.set_title(f"{first}x{first} and {second}x{second}", fontsize=8)
        ax.axis("off")
    methods = [("supervised", "C1"), ("simclr_tau0.05", "C0"), ("simclr_tau0.2", "C2"), ("random_encoder", "grey")]
    for j, digit in enumerate(DIGITS):
        ax = fig.add_subplot(layout[1, 2 * j:2 * j + 2])
        for method, colour in methods:
            ours = [r["probe_accuracy"][digit] * 100 for r in rows if r["method"] == method]
            ax.plot([s / first for s in sizes], ours, "o-", color=colour, label=f"{method} (pyclr)")
            ax.plot([s / PAPER_SIZES[0] for s in PAPER_SIZES], PAPER[method][digit], "s--", color=colour, alpha=0.4,
                    label=f"{method} (paper)")
        ax.set(title=f"probe on the {digit} digit", xlabel="second digit size / first digit size", ylim=(0, 102),
               ylabel="top-1 (%)" if j == 0 else None)
        ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = _common.parser(__doc__, data_root="folder with MNIST's IDX files (default: the embedded subset)")
    _common.add_run_options(parser, threads=True, resumable=True)
    args = _common.parse(parser)
    device = device_of(args.device)
    grid = settings(args.quick)
    workers = 0 if args.quick else min(8, os.cpu_count() or 1)
    mnist_source = TwoDigitSizes(size=1, root=args.data_root).source
    log = _common.run_log(args, "feature_suppression_sizes", device, {"mnist_source": mnist_source, "settings": grid})
    rows = [row for second in grid["second_sizes"]
            for row in run_size(second, grid, args.data_root, device, workers, log)]
    os.makedirs(args.out, exist_ok=True)
    figure = os.path.join(args.out, "feature_suppression_sizes.png")
    plot(rows, grid, args.data_root, figure)
    path = os.path.join(args.out, "feature_suppression_sizes.json")
    _common.write_json(path, {**_common.header(args.quick, device), "mnist_source": mnist_source,
                              "settings": grid, "results": rows,
                              "paper_table4": {"second_sizes": PAPER_SIZES, "first_size": 20, **PAPER}})
    log.close()
    print(f"wrote {path} and {figure}")


if __name__ == "__main__":
    main()
