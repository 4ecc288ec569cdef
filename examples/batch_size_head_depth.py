"""Intriguing Properties Table 2 (the [Re] paper's Table 1): linear evaluation across batch
sizes and projection-head depths 2-4. The paper's claim: with tuned hyperparameters the batch
size matters little, and deeper heads (3-4 layers) help a little. (The [Re] paper's Table 2,
a 1-layer head at batch 128-512, is not run here.)

    python examples/batch_size_head_depth.py --quick       # 2-core CPU, a couple of minutes
    python examples/batch_size_head_depth.py --data-root DIR   # GPU: ResNet-18, CIFAR-10

Writes results/batch_size_head_depth.json and batch_size_head_depth.png (probe accuracy
against batch size, one line per head depth, beside the paper's Table 2: ImageNet, ResNet-50,
100 epochs, a setting on its own scale). Quick mode: the demo setting (small ConvNet,
28x28 canvases of one embedded MNIST digit), the same number of epochs for every batch size
(so smaller batches take more steps), Adam at a fixed rate: a scaled-down stand-in.
"""
from __future__ import annotations

import os
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import pyclr  # noqa: E402
from pyclr.train.experiment import probe  # noqa: E402
from pyclr.train.presets import (build_augment, build_dataset, build_encoder, build_head, device_of,  # noqa: E402
                                 resolve_config)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

PAPER = {  # ImageNet, ResNet-50, 100 epochs (Table 2 of Intriguing Properties)
    (2, 512): 65.4, (2, 1024): 65.6, (2, 2048): 65.3,
    (3, 512): 66.6, (3, 1024): 66.8, (3, 2048): 66.8,
    (4, 512): 66.8, (4, 1024): 67.0, (4, 2048): 67.0,
}


def grid(quick: bool):
    if quick:
        return [64, 256], [2, 3, 4], resolve_config({"preset": "demo", "train": {"epochs": 3}})
    return [256, 512, 1024], [2, 3, 4], resolve_config({"preset": "simclr_cifar10", "train": {"epochs": 200}})


def train_and_probe(cfg: dict, depth: int, batch: int, dataset, augment, device) -> dict:
    torch.manual_seed(0)
    encoder = build_encoder(cfg["encoder"])
    head = build_head({**cfg["head"], "num_layers": depth}, encoder)
    options = {**cfg["train"], "batch_size": batch}
    started = time.perf_counter()
    result = pyclr.train(encoder, dataset, augment=augment, head=head, device=device, progress=False, **options)
    return {"head_layers": depth, "batch_size": batch, "probe_accuracy": probe(cfg, result.encoder, device),
            "train_time_s": time.perf_counter() - started}


def plot(payload: dict, path: str) -> None:
    """Probe accuracy against batch size, one line per head depth: pyclr's run (left) and the
    paper's Table 2 (right: another dataset, network and length, so its own axis, spanning as
    many points as the left one), from the script's JSON content ``payload``."""
    cfg = payload["config"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ours = [(r["head_layers"], r["batch_size"], r["probe_accuracy"] * 100) for r in payload["results"]]
    paper = [(r["head_layers"], r["batch_size"], r["accuracy"]) for r in payload["paper_imagenet_100_epochs"]]
    panels = ((axes[0], ours,
               f"pyclr, {payload['mode']} mode: {cfg['encoder']['name']} on {cfg['dataset']['name']},\n"
               f"{cfg['train']['epochs']} epochs, {cfg['train']['optimizer']} at lr {cfg['train']['lr']}"),
              (axes[1], paper,
               "paper (Intriguing Properties Table 2):\nResNet-50 on ImageNet, 100 epochs"))
    # the same span of points on both axes, so that slopes compare
    span = max(max(a for _, _, a in points) - min(a for _, _, a in points) for points in (ours, paper)) + 2
    for ax, points, title in panels:
        for depth in sorted({d for d, _, _ in points}):
            line = sorted((b, a) for d, b, a in points if d == depth)
            ax.plot([b for b, _ in line], [a for _, a in line], "o-", color=f"C{depth - 2}",
                    label=f"{depth}-layer head")
            for b, a in line:
                # below the point where another depth's point sits just above it at this batch size
                crowded = any(b2 == b and a < a2 < a + 0.1 * span for _, b2, a2 in points)
                ax.annotate(f"{a:.1f}", (b, a), textcoords="offset points", xytext=(4, -10 if crowded else 4),
                            fontsize=7, color=f"C{depth - 2}")
        batches = sorted({b for _, b, _ in points})
        middle = (min(a for _, _, a in points) + max(a for _, _, a in points)) / 2
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.set_xlim(batches[0] / 1.3, batches[-1] * 1.3)
        ax.set(title=title, xlabel="batch size", ylabel="linear probe top-1 (%)",
               ylim=(middle - span / 2, middle + span / 2))
        ax.title.set_fontsize(9)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Batch size x projection-head depth (different settings: compare the trends, not the levels)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = _common.parser(__doc__, data_root="CIFAR-10 folder (full mode)")
    _common.add_run_options(parser, resumable=True)
    args = _common.parse(parser)
    if not args.quick and not args.data_root:
        parser.error("full mode trains on CIFAR-10: give --data-root (or use --quick)")
    batches, depths, cfg = grid(args.quick)
    if not args.quick:
        for spec in (cfg["dataset"], cfg["eval"]["train"], cfg["eval"]["test"]):
            spec["root"] = args.data_root
    device = device_of(args.device)
    log = _common.run_log(args, "batch_size_head_depth", device, {"config": cfg})
    dataset, augment = build_dataset(cfg["dataset"]), build_augment(cfg["augment"])
    rows = []
    for depth in depths:
        for batch in batches:
            row = log.unit(f"head{depth}/batch{batch}",
                           lambda: train_and_probe(cfg, depth, batch, dataset, augment, device))
            rows.append(row)
            print(f"head {depth} layers, batch {batch:5}: probe {row['probe_accuracy']:.4f} "
                  f"({row['train_time_s']:.0f} s)", flush=True)
    payload = {**_common.header(args.quick, device, threads=None), "config": cfg, "results": rows,
               "paper_imagenet_100_epochs": [{"head_layers": d, "batch_size": b, "accuracy": a}
                                             for (d, b), a in PAPER.items()]}
    path = os.path.join(args.out, "batch_size_head_depth.json")
    _common.write_json(path, payload)
    figure = os.path.join(args.out, "batch_size_head_depth.png")
    plot(payload, figure)
    log.close()
    print(f"wrote {path} and {figure}")


if __name__ == "__main__":
    main()
