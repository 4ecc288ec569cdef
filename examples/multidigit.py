"""Intriguing Properties of Contrastive Losses, Table 3 (and Figure 2): SimCLR still learns
on images with several objects. Encoders are trained on MultiDigit canvases holding n MNIST
digits (28x28; random placement, overlaps add, or distinct cells of a grid); a linear probe
is then fitted and tested on canvases holding one digit, labelled by that digit. The paper's
claim: from 1 up to 16 digits per training canvas, SimCLR's probe stays near the supervised
network's (ResNet-18 on 112x112: 96.4-99.2% against 92.4-99.6%), far above a random
network's 18%.

    python examples/multidigit.py --quick        # 2-core CPU, minutes
    python examples/multidigit.py                # GPU: ResNet-18, 112x112, 1-16 digits

For each placement and digit count: SimCLR (NT-Xent, tau 0.2) and a supervised baseline
(pyclr.train.train_supervised: encoder + linear classifier, cross-entropy on the set of
digits on the canvas: the target is their class distribution), then the single-digit probe;
a randomly initialised encoder is probed once per placement. Supervised training uses no
augmentation: the canvases' random placement already varies the digits' positions, and a
crop would drop labelled digits.

Writes results/multidigit.json and multidigit.png (canvas examples as in Figure 2; probe
accuracy against digit count). Full mode: the "multidigit" preset (ResNet-18, 112x112 canvas,
20,000 training canvases, SimCLR augmentation, LARS, batch 256) for 1, 2, 4, 8, 12, 16 digits,
shortened to 20 epochs per run so that the 24 runs should fit in about an hour on one H100
(an estimate: not yet run on a GPU); MNIST's IDX files with --data-root, else the embedded
4,000-digit subset. Quick mode is a scaled-down stand-in: a 56x56 canvas (a 2x2 grid, so 1
and 4 digits: 4 digits on 56x56 have the per-area density of 16 on 112x112), pyclr's small
ConvNet with global average pooling, 2,048 training canvases, 8 epochs at batch 64 with Adam,
crops of area 0.5-1, the embedded digits.
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
from pyclr.data import InMemory, MultiDigit, multidigit_eval  # noqa: E402
from pyclr.evaluate import extract_features, linear_probe  # noqa: E402
from pyclr.train import train_supervised  # noqa: E402
from pyclr.train.presets import build_augment, build_encoder, build_head, device_of, resolve_config  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

# Table 3 of Intriguing Properties (ResNet-18, 112x112, one digit at evaluation), top-1 %.
PAPER_DIGITS = [1, 2, 4, 8, 12, 16]
PAPER = {
    "supervised": {"random": [99.5, 99.5, 99.3, 99.4, 98.9, 98.3], "grid": [99.5, 99.6, 99.5, 99.3, 98.6, 92.4]},
    "simclr": {"random": [98.9, 98.9, 99.0, 98.9, 98.2, 96.4], "grid": [98.3, 98.6, 99.1, 99.2, 99.1, 98.3]},
}
PAPER_RANDOM_NETWORK = 18.0  # "a network with random weights gives 18% top-1 accuracy"
PLACEMENTS = ("random", "grid")


def training_config(overrides: dict) -> dict:
    """The "multidigit" preset's encoder, augmentation, head and training, with ``overrides``;
    its dataset and eval sections are dropped (this script builds its own)."""
    cfg = resolve_config({"preset": "multidigit", **overrides})
    return {key: cfg[key] for key in ("encoder", "augment", "head", "train") if cfg.get(key) is not None}


def training(quick: bool) -> dict:
    """How the encoders are trained: SimCLR's configuration and the supervised options (the
    digit-size experiment, feature_suppression_sizes.py, trains the same way)."""
    if quick:
        return {"config": training_config({
                    "encoder": {"name": "small_convnet", "in_channels": 1, "input_size": 56, "global_pool": True},
                    "augment": {"policy": "simclr_cifar", "size": 56, "crop_scale": [0.5, 1.0], "jitter_strength": 1.0},
                    "head": {"hidden_dim": 128, "out_dim": 64, "num_layers": 2},
                    "train": {"epochs": 8, "batch_size": 64, "optimizer": "adam", "lr": 3e-3, "weight_decay": 1e-5,
                              "warmup_epochs": 0.5}}),
                "supervised": {"epochs": 8, "batch_size": 64, "lr": 3e-3, "weight_decay": 1e-5}}
    return {"config": training_config({"train": {"epochs": 20}}),
            "supervised": {"epochs": 20, "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-5}}


def settings(quick: bool) -> dict:
    """Everything a run depends on; quick mode scales each axis down (see the docstring)."""
    if quick:
        return {"canvas": 56, "digit_counts": [1, 4], "train_size": 2048, "probe_train": 2000, "probe_test": 1000,
                **training(quick)}
    return {"canvas": 112, "digit_counts": PAPER_DIGITS, "train_size": 20000, "probe_train": 5000, "probe_test": 2000,
            **training(quick)}


def probe_single_digit(encoder, probe_sets, device) -> float:
    """Table 3's evaluation: features of one-digit canvases, a linear probe on the digit."""
    x, labels = extract_features(encoder, probe_sets[0], device=device)
    tx, test_labels = extract_features(encoder, probe_sets[1], device=device)
    return linear_probe(x, labels["label"], tx, test_labels["label"]).accuracy


def train_simclr(cfg, dataset, device):
    torch.manual_seed(0)
    encoder = build_encoder(cfg["encoder"])
    head = build_head(cfg.get("head"), encoder)
    return pyclr.train(encoder, dataset, augment=build_augment(cfg["augment"]), head=head, device=device,
                       progress=False, **cfg["train"]).encoder


def train_baseline(cfg, options, dataset, device):
    torch.manual_seed(0)
    encoder = build_encoder(cfg["encoder"])
    # "digits" is the -1-padded list of the canvas's digits: the target is their distribution.
    return train_supervised(encoder, dataset, label="digits", num_classes=10, device=device, **options).encoder


def run_placement(placement, grid, root, device, workers, log: _common.RunLog) -> list:
    """The random encoder's probe, then SimCLR and the supervised baseline at each digit count;
    each is one unit of the run log (its data built only when it is not reused)."""
    cfg = grid["config"]

    @functools.cache
    def probe_sets():
        return [InMemory(multidigit_eval(placement, grid["canvas"], size, seed, root, train), num_workers=workers)
                for size, seed, train in ((grid["probe_train"], 1, True), (grid["probe_test"], 2, False))]

    @functools.lru_cache(maxsize=1)  # one digit count's canvases at a time, as they are used
    def canvases(n):
        return InMemory(MultiDigit(n, placement, grid["canvas"], grid["train_size"], 0, root), num_workers=workers)

    def random_encoder():
        sets = probe_sets()
        torch.manual_seed(1)
        return {"placement": placement, "method": "random_encoder", "n_digits": None,
                "probe_accuracy": probe_single_digit(build_encoder(cfg["encoder"]).to(device), sets, device)}

    def trained(method, n):
        data, sets = canvases(n), probe_sets()
        started = time.perf_counter()
        if method == "simclr":
            encoder = train_simclr(cfg, data, device)
        else:
            encoder = train_baseline(cfg, grid["supervised"], data, device)
        return {"placement": placement, "method": method, "n_digits": n,
                "probe_accuracy": probe_single_digit(encoder, sets, device),
                "time_s": time.perf_counter() - started}

    rows = [log.unit(f"{placement}/random_encoder", random_encoder)]
    print(f"{placement:6} random encoder: probe {rows[0]['probe_accuracy']:.4f}", flush=True)
    for n in grid["digit_counts"]:
        for method in ("simclr", "supervised"):
            row = log.unit(f"{placement}/{method}/{n}", lambda: trained(method, n))
            rows.append(row)
            print(f"{placement:6} {method:10} {n:2} digits: probe {row['probe_accuracy']:.4f} "
                  f"({row['time_s']:.0f} s)", flush=True)
    return rows


def plot(rows, grid, root, path) -> None:
    """Figure 2's canvases (top) and the probe accuracy against the digit count (bottom)."""
    counts, side = grid["digit_counts"], grid["canvas"]
    fig = plt.figure(figsize=(9, 6.5))
    layout = fig.add_gridspec(2, 4, height_ratios=[1, 2])
    for i, (placement, n) in enumerate((p, n) for p in PLACEMENTS for n in counts[-2:]):
        ax = fig.add_subplot(layout[0, i])
        ax.imshow(MultiDigit(n, placement, grid["canvas"], 1, 5, root)[0][0][0], cmap="gray")
        ax.set_title(f"{n} digits, {placement}", fontsize=8)
        ax.axis("off")
    for j, placement in enumerate(PLACEMENTS):
        ax = fig.add_subplot(layout[1, 2 * j:2 * j + 2])
        for method, colour in (("simclr", "C0"), ("supervised", "C1")):
            ours = [r["probe_accuracy"] * 100 for r in rows if r["placement"] == placement and r["method"] == method]
            ax.plot(counts, ours, "o-", color=colour, label=f"{method} (pyclr, {side}x{side})")
            ax.plot(PAPER_DIGITS, PAPER[method][placement], "s--", color=colour, alpha=0.5,
                    label=f"{method} (paper, 112x112)")
        random_acc = next(r["probe_accuracy"] for r in rows if r["placement"] == placement and r["n_digits"] is None)
        ax.axhline(random_acc * 100, color="grey", ls=":", label=f"random encoder (pyclr, {side}x{side})")
        ax.axhline(PAPER_RANDOM_NETWORK, color="grey", ls="-.", alpha=0.5, label="random network (paper)")
        ax.set(title=f"{placement} placement", xlabel="digits per training canvas", ylim=(0, 102),
               ylabel="single-digit probe top-1 (%)" if j == 0 else None)
        ticks = sorted(set(counts + PAPER_DIGITS))
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
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
    mnist_source = MultiDigit(1, size=1, root=args.data_root).source
    log = _common.run_log(args, "multidigit", device, {"mnist_source": mnist_source, "settings": grid})
    rows = [row for placement in PLACEMENTS
            for row in run_placement(placement, grid, args.data_root, device, workers, log)]
    os.makedirs(args.out, exist_ok=True)
    figure = os.path.join(args.out, "multidigit.png")
    plot(rows, grid, args.data_root, figure)
    path = os.path.join(args.out, "multidigit.json")
    _common.write_json(path, {**_common.header(args.quick, device), "mnist_source": mnist_source,
                              "settings": grid, "results": rows,
                              "paper_table3": {"digit_counts": PAPER_DIGITS, **PAPER,
                                               "random_network": PAPER_RANDOM_NETWORK}})
    log.close()
    print(f"wrote {path} and {figure}")


if __name__ == "__main__":
    main()
