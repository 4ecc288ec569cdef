"""Intriguing Properties Table 2 ([Re] paper Tables 1-2): linear evaluation across batch
sizes and projection-head depths. The paper's claim: with tuned hyperparameters the batch
size matters little, and deeper heads (3-4 layers) help a little.

    python examples/batch_size_head_depth.py --quick       # 2-core CPU, a couple of minutes
    python examples/batch_size_head_depth.py --data-root DIR   # GPU: ResNet-18, CIFAR-10

Writes results/batch_size_head_depth.json. Quick mode: the demo setting (small ConvNet,
28x28 canvases of one embedded MNIST digit), the same number of epochs for every batch size
(so smaller batches take more steps), Adam at a fixed rate: a scaled-down stand-in.
"""
from __future__ import annotations

import os
import sys
import time

import torch

import pyclr
from pyclr.train.experiment import probe
from pyclr.train.presets import build_augment, build_dataset, build_encoder, build_head, device_of, resolve_config

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
    path = os.path.join(args.out, "batch_size_head_depth.json")
    _common.write_json(path, {**_common.header(args.quick, device, threads=None), "config": cfg, "results": rows,
                              "paper_imagenet_100_epochs": [{"head_layers": d, "batch_size": b, "accuracy": a}
                                                            for (d, b), a in PAPER.items()]})
    log.close()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
