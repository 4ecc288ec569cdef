"""The invariance measure of Purushwalkam & Gupta (Demystifying Contrastive Self-Supervised
Learning, supplement A) on a SimCLR-trained encoder beside a randomly initialised one.

For each family of transformations (random resized crops, colour jitter, the full training
augmentation), every held-out instance is transformed into V views; the measure asks how
reliably a unit that fires for a class keeps firing over the views of that class's instances,
with class-adaptive thresholds (pyclr.analysis.invariance_score). Contrastive training asks
the representation to be invariant to its augmentation, so the trained encoder should score
above the random one on the families it was trained with.

    python examples/invariance.py --quick            # 2-core CPU, a minute or two
    python examples/invariance.py --data-root DIR    # GPU: ResNet-18 on CIFAR-10

Writes results/invariance.json and results/invariance.png. Quick mode: the pyclr demo
setting (small ConvNet, 28x28 canvases of one embedded MNIST digit, 3 epochs): a scaled-down
stand-in; the paper measures ResNet-50s trained on ImageNet/videos, whose numbers it does
not reproduce.
"""
from __future__ import annotations

import os
import sys
import time

import torch

import pyclr
from pyclr.analysis import invariance_score
from pyclr.data.augment import SimCLRAugment
from pyclr.evaluate.features import pick_label
from pyclr.train.experiment import probe
from pyclr.train.presets import build_augment, build_dataset, build_encoder, build_head, device_of

# the same trained encoder as the loss-instantiation experiment's NT-Xent run: one copy of its settings
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loss_instantiations import config  # noqa: E402

import _common  # noqa: E402


def transformations(cfg: dict) -> dict:
    """The families measured: each part of the training augmentation alone, and all of it."""
    spec = dict(cfg["augment"])
    policy, size = spec.pop("policy"), spec.pop("size")
    crop_scale = tuple(spec.get("crop_scale", (0.08, 1.0)))
    strength = spec.get("jitter_strength", SimCLRAugment.from_policy(policy).jitter_strength)
    return {
        "crop": SimCLRAugment(size, crop=True, crop_scale=crop_scale, flip_p=0.5, jitter_strength=0.0,
                              jitter_p=0.0, grayscale_p=0.0, blur_p=0.0),
        "colour_jitter": SimCLRAugment(size, crop=False, flip_p=0.0, jitter_strength=strength, jitter_p=1.0,
                                       grayscale_p=0.0, blur_p=0.0),
        "training_augmentation": build_augment(cfg["augment"]),
    }


@torch.no_grad()
def view_activations(encoder, images, augment, views: int, device, seed: int) -> torch.Tensor:
    """(n, views, D): the representation of ``views`` independent transformations of each image."""
    encoder.eval()
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(views):
        chunks = [encoder(augment(batch, generator).to(device)) for batch in images.split(256)]
        out.append(torch.cat(chunks).cpu())
    return torch.stack(out, 1)


def measure(encoder, images, labels, families, views, device) -> dict:
    """Per family: the score over each class's top 1% of units (the default), top 10%, and all units."""
    rows = {}
    for i, (name, augment) in enumerate(families.items()):
        acts = view_activations(encoder, images, augment, views, device, seed=i)
        units = acts.shape[2]
        rows[name] = {}
        for share, top_k in (("top_1pct", None), ("top_10pct", max(1, round(units / 10))), ("all_units", units)):
            s = invariance_score(acts, labels, top_k=top_k)
            rows[name][share] = {"score": s.score, "top_k": s.top_k, "per_class": s.per_class.tolist()}
        rows[name]["score"] = rows[name]["top_1pct"]["score"]
    return rows


def figure(rows: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(next(iter(rows.values()))["invariance"])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.8 / len(rows)
    for i, (model, row) in enumerate(rows.items()):
        ax.bar([f + i * width for f in range(len(families))], [row["invariance"][f]["score"] for f in families],
               width, label=model)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xticks([f + width * (len(rows) - 1) / 2 for f in range(len(families))], families)
    ax.set_ylabel("invariance I(f), top 1% of units")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = _common.parser(__doc__, quick_help="the 2-core CPU setting (a minute or two)",
                            data_root="CIFAR-10 folder (full mode)")
    parser.add_argument("--views", type=_common.positive_int, default=8, help="transformed views per instance")
    parser.add_argument("--instances", type=_common.positive_int, default=1000, help="held-out instances measured")
    _common.add_run_options(parser)
    args = _common.parse(parser)
    if not args.quick and not args.data_root:
        parser.error("full mode trains on CIFAR-10: give --data-root (or use --quick)")
    cfg = config(args.quick, args.data_root)
    device = device_of(args.device)
    test = build_dataset(cfg["eval"]["test"])
    count = min(args.instances, len(test))
    items = [test[i] for i in range(count)]
    images = torch.stack([image for image, _ in items])
    labels = pick_label({k: torch.stack([torch.as_tensor(l[k]) for _, l in items]) for k in items[0][1]}
                        if isinstance(items[0][1], dict) else torch.tensor([l for _, l in items]),
                        cfg["eval"].get("label"))
    families = transformations(cfg)

    torch.manual_seed(0)
    encoder = build_encoder(cfg["encoder"])
    random_encoder = build_encoder(cfg["encoder"]).to(device)
    random_encoder.load_state_dict(encoder.state_dict())  # the trained encoder's own initialisation
    started = time.perf_counter()
    train_options = {k: v for k, v in cfg["train"].items()}
    result = pyclr.train(encoder, build_dataset(cfg["dataset"]), augment=build_augment(cfg["augment"]),
                         head=build_head(cfg["head"], encoder), device=device, progress=False, **train_options)
    train_time = time.perf_counter() - started
    rows = {}
    for model, net in (("simclr", result.encoder), ("random", random_encoder)):
        scores = measure(net, images, labels, families, args.views, device)
        rows[model] = {"probe_accuracy": probe(cfg, net, device), "invariance": scores}
        print(f"{model:7} probe {rows[model]['probe_accuracy']:.3f}", flush=True)
        for name, row in scores.items():
            print(f"  {name:22} I(f), top 1% / 10% / all units: " +
                  " / ".join(f"{row[k]['score']:.3f}" for k in ("top_1pct", "top_10pct", "all_units")), flush=True)
    path = os.path.join(args.out, "invariance.json")
    _common.write_json(path, {**_common.header(args.quick, device, threads=None), "config": cfg,
                              "instances": count, "views": args.views, "train_time_s": train_time,
                              "units": result.encoder.feature_dim, "chance_score": 1.0,
                              "max_score": "1 / P(y) (about the number of classes when balanced)", "results": rows})
    figure(rows, os.path.join(args.out, "invariance.png"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
