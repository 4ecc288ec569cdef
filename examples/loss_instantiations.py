"""Intriguing Properties of Contrastive Losses, property 1 (Table 1 and its CIFAR-10 plot):
different instantiations of the generalized contrastive loss perform similarly.

Trains the same encoder with NT-Xent and with the four generalized losses (alignment +
lambda x logsumexp or sliced-Wasserstein to the uniform hypersphere, SWD to the uniform
hypercube and to the normal distribution) and reports each one's linear-probe accuracy.

    python examples/loss_instantiations.py --quick        # 2-core CPU, minutes
    python examples/loss_instantiations.py                # GPU: ResNet-18 on CIFAR-10 (--data-root)

Writes results/loss_instantiations.json. Quick mode: the pyclr demo setting (a small ConvNet
on 28x28 canvases of one embedded MNIST digit), a few epochs: a scaled-down stand-in for the
paper's CIFAR-10 ResNet-50 runs, whose absolute numbers it does not reproduce.
"""
from __future__ import annotations

import os
import sys
import time

import torch

import pyclr
from pyclr.losses import GeneralizedContrastiveLoss, NTXentLoss
from pyclr.train.experiment import probe
from pyclr.train.presets import build_augment, build_dataset, build_encoder, build_head, device_of, resolve_config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402


def losses(temperature: float, dim: int) -> dict:
    # NT-Xent = (d / tau) * L_align + logsumexp (SPEC.md's L_align is per dimension), so the
    # logsumexp instantiation that matches it has lam = tau / d; SWD terms use lam = 1.
    return {
        "nt_xent": NTXentLoss(temperature=temperature),
        "hypersphere_logsumexp": GeneralizedContrastiveLoss("hypersphere", "logsumexp", lam=temperature / dim,
                                                            temperature=temperature),
        "hypersphere_swd": GeneralizedContrastiveLoss("hypersphere", "swd", lam=1.0),
        "hypercube_swd": GeneralizedContrastiveLoss("hypercube", "swd", lam=1.0),
        "gaussian_swd": GeneralizedContrastiveLoss("gaussian", "swd", lam=1.0),
    }


def config(quick: bool, data_root: str | None) -> dict:
    if quick:
        return resolve_config({"preset": "demo", "train": {"epochs": 3}})
    cfg = resolve_config({"preset": "simclr_cifar10", "train": {"epochs": 200, "batch_size": 512}})
    for spec in (cfg["dataset"], cfg["eval"]["train"], cfg["eval"]["test"]):
        spec["root"] = data_root
    return cfg


def train_and_probe(cfg: dict, loss, dataset, augment, device) -> dict:
    torch.manual_seed(0)
    encoder = build_encoder(cfg["encoder"])
    train_options = {k: v for k, v in cfg["train"].items() if k != "temperature"}
    started = time.perf_counter()
    result = pyclr.train(encoder, dataset, loss=loss, augment=augment, head=build_head(cfg["head"], encoder),
                         device=device, progress=False, **train_options)
    return {"probe_accuracy": probe(cfg, result.encoder, device),
            "final_loss": result.history[-1]["loss"], "train_time_s": time.perf_counter() - started}


def main() -> None:
    parser = _common.parser(__doc__, data_root="CIFAR-10 folder (full mode)")
    _common.add_run_options(parser, resumable=True)
    args = _common.parse(parser)
    if not args.quick and not args.data_root:
        parser.error("full mode trains on CIFAR-10: give --data-root (or use --quick)")
    cfg = config(args.quick, args.data_root)
    device = device_of(args.device)
    log = _common.run_log(args, "loss_instantiations", device, {"config": cfg})
    dataset, augment = build_dataset(cfg["dataset"]), build_augment(cfg["augment"])
    rows = {}
    for name, loss in losses(cfg["train"]["temperature"], cfg["head"]["out_dim"]).items():
        rows[name] = log.unit(name, lambda: train_and_probe(cfg, loss, dataset, augment, device))
        print(f"{name:24} probe {rows[name]['probe_accuracy']:.4f}  ({rows[name]['train_time_s']:.0f} s)", flush=True)
    path = os.path.join(args.out, "loss_instantiations.json")
    _common.write_json(path, {**_common.header(args.quick, device, threads=None), "config": cfg, "results": rows})
    log.close()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
