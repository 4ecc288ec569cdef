"""Intriguing Properties of Contrastive Losses, property 1 (Table 1 and its CIFAR-10 plot):
different instantiations of the generalized contrastive loss perform similarly.

Trains the same encoder with NT-Xent and with the four generalized losses (alignment +
lambda x logsumexp or sliced-Wasserstein to the uniform hypersphere, SWD to the uniform
hypercube and to the normal distribution) and reports each one's linear-probe accuracy,
beside that of the same encoder left untrained (the same probe). Each seed gives every loss and
the untrained baseline one initialisation; quick mode runs three seeds and reports their mean
and spread, as one seed cannot separate losses a few points apart (a probe on 1,000 test items
has a standard error near one point). The loss weights are fixed, not tuned per loss:
lam = tau / d for the logsumexp instantiation (the one that matches NT-Xent), 1 for the SWD ones.

    python examples/loss_instantiations.py --quick        # 2-core CPU, minutes
    python examples/loss_instantiations.py                # GPU: ResNet-18 on CIFAR-10 (--data-root)

Writes results/loss_instantiations.json and loss_instantiations.png (probe accuracy per
loss, the untrained encoder as a line; the paper gives its plot no numbers, so none are
drawn beside ours). Quick mode: the pyclr demo setting (a small ConvNet on 28x28 canvases of
one embedded MNIST digit), a few epochs: a scaled-down stand-in for the paper's CIFAR-10
ResNet-50 runs, whose absolute numbers it does not reproduce.
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
from pyclr.losses import GeneralizedContrastiveLoss, NTXentLoss  # noqa: E402
from pyclr.train.experiment import probe  # noqa: E402
from pyclr.train.presets import (build_augment, build_dataset, build_encoder, build_head, device_of,  # noqa: E402
                                 resolve_config)

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


LABELS = {"nt_xent": "NT-Xent", "hypersphere_logsumexp": "hypersphere\n+ logsumexp",
          "hypersphere_swd": "hypersphere\n+ SWD", "hypercube_swd": "hypercube\n+ SWD",
          "gaussian_swd": "Gaussian\n+ SWD"}


def seeds(quick: bool) -> list[int]:
    return [0, 1, 2] if quick else [0]


def config(quick: bool, data_root: str | None) -> dict:
    if quick:
        return resolve_config({"preset": "demo", "train": {"epochs": 3}})
    cfg = resolve_config({"preset": "simclr_cifar10", "train": {"epochs": 200, "batch_size": 512}})
    for spec in (cfg["dataset"], cfg["eval"]["train"], cfg["eval"]["test"]):
        spec["root"] = data_root
    return cfg


def fresh_encoder(cfg: dict, seed: int):
    torch.manual_seed(seed)  # one initialisation per seed for every loss and the untrained baseline
    return build_encoder(cfg["encoder"])


def train_and_probe(cfg: dict, loss, dataset, augment, device, seed: int) -> dict:
    encoder = fresh_encoder(cfg, seed)
    train_options = {k: v for k, v in cfg["train"].items() if k != "temperature"} | {"seed": seed}
    started = time.perf_counter()
    result = pyclr.train(encoder, dataset, loss=loss, augment=augment, head=build_head(cfg["head"], encoder),
                         device=device, progress=False, **train_options)
    return {"probe_accuracy": probe(cfg, result.encoder, device),
            "final_loss": result.history[-1]["loss"], "train_time_s": time.perf_counter() - started}


def random_encoder(cfg: dict, device, seed: int) -> dict:
    """The baseline: the seed's encoder untrained, probed the same way."""
    return {"probe_accuracy": probe(cfg, fresh_encoder(cfg, seed).to(device), device)}


def summary(units: dict) -> dict:
    """The per-seed ``units`` ({seed: {"probe_accuracy": ...}, ...}) with their probe accuracies'
    mean and standard deviation (n - 1; 0 for one seed)."""
    values = torch.tensor([unit["probe_accuracy"] for unit in units.values()], dtype=torch.float64)
    spread = values.std().item() if len(values) > 1 else 0.0
    return {"probe_accuracy": values.mean().item(), "probe_accuracy_std": spread, "seeds": units}


def plot(payload: dict, path: str) -> None:
    """Probe accuracy per loss (bars) and the untrained encoder's (a line, where ``payload``
    has it), from the script's JSON content ``payload``."""
    results, cfg = payload["results"], payload["config"]
    fig, ax = plt.subplots(figsize=(7, 4))
    accuracies = [results[name]["probe_accuracy"] * 100 for name in results]
    spreads = [results[name].get("probe_accuracy_std", 0.0) * 100 for name in results]
    n_seeds = len(payload.get("seeds", [0]))
    bars = ax.bar(range(len(results)), accuracies, yerr=spreads if n_seeds > 1 else None, capsize=3,
                  color="C0", width=0.6, label=f"SimCLR-trained (pyclr, {payload['mode']} mode"
                                               + (f", mean and sd of {n_seeds} seeds)" if n_seeds > 1 else ")"))
    ax.bar_label(bars, [f"{a:.1f}" for a in accuracies], fontsize=8)
    if payload.get("random_encoder"):
        ax.axhline(payload["random_encoder"]["probe_accuracy"] * 100, color="grey", ls=":",
                   label=f"untrained encoder ({payload['random_encoder']['probe_accuracy'] * 100:.1f})")
    ax.set_xticks(range(len(results)), [LABELS.get(name, name) for name in results], fontsize=8)
    ax.set(ylim=(0, 105), ylabel="linear probe top-1 (%)",
           title=f"{cfg['encoder']['name']} on {cfg['dataset']['name']}, {cfg['train']['epochs']} epochs "
                 f"(batch {cfg['train']['batch_size']}, tau {cfg['train']['temperature']})")
    ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Loss instantiations (Intriguing Properties, Table 1 and its plot)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    runs = {name: {} for name in LABELS}
    baselines = {}
    for seed in seeds(args.quick):
        # fresh loss modules per seed: nothing a loss holds carries over from another seed's run
        for name, loss in losses(cfg["train"]["temperature"], cfg["head"]["out_dim"]).items():
            unit = log.unit(f"{name}/seed {seed}", lambda: train_and_probe(cfg, loss, dataset, augment, device, seed))
            runs[name][str(seed)] = unit
            print(f"seed {seed} {name:24} probe {unit['probe_accuracy']:.4f}  ({unit['train_time_s']:.0f} s)",
                  flush=True)
        baselines[str(seed)] = log.unit(f"random_encoder/seed {seed}", lambda: random_encoder(cfg, device, seed))
        print(f"seed {seed} {'untrained encoder':24} probe {baselines[str(seed)]['probe_accuracy']:.4f}", flush=True)
    rows = {name: summary(units) for name, units in runs.items()}
    baseline = summary(baselines)
    for name, row in {**rows, "untrained encoder": baseline}.items():
        print(f"{name:24} probe {row['probe_accuracy']:.4f} +- {row['probe_accuracy_std']:.4f}", flush=True)
    payload = {**_common.header(args.quick, device, threads=None), "config": cfg, "seeds": seeds(args.quick),
               "results": rows, "random_encoder": baseline}
    path = os.path.join(args.out, "loss_instantiations.json")
    _common.write_json(path, payload)
    figure = os.path.join(args.out, "loss_instantiations.png")
    plot(payload, figure)
    log.close()
    print(f"wrote {path} and {figure}")


if __name__ == "__main__":
    main()
