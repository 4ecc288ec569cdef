"""Hermann et al. (2020), Sec. 3, Fig. 3 and 4: how SimCLR represents continuous appearance
parameters of the sprites data (one shape in 10 colours x 6 scales x 16 x 16 positions). The
paper's claims: with crop + jitter, colour, scale and position are more decodable early in the
projection head than at its output (as on ImageNet); a model trained without augmentation shows
a similar pattern; colour-incongruent random crops alone raise colour decodability in all but
the last head layer, while colour-congruent colour jitter washes colour out but raises position
decodability; PCA of the head input of a crop + jitter model is organised by the features.
The paper gives figures only, no numbers.

    python examples/sprites_decodability.py --quick       # 2-core CPU, a few minutes
    python examples/sprites_decodability.py --quick --threads 1   # the same on a CPU shared with other jobs
    python examples/sprites_decodability.py               # GPU: ResNet-18, 50 epochs per model

Full mode: ResNet-18 with the CIFAR stem (3x3 stride-1 first convolution, no max-pool) on the
64x64 images, a 512-512-128 head, SimCLR at tau 0.5, Adam 1e-3, batch 128, for each of the
four augmentation policies (sprites_none, sprites_jitter, sprites_crop, sprites_crop+jitter),
all from the same initialisation. The paper trains 200 epochs; full mode trains 50 so that the
four models fit well under an hour on one H100. Adam's rate stays at 1e-3 throughout
(schedule "constant": the paper names no decay). The head has no batch norm and, as the paper's, no bias
in its last layer (ProjectionHead(output_bias=False)). The crop policies also flip each view
horizontally with probability 0.5, as SimCLR's crop branch does (the paper's appendix names the
resized crop only): the heart is left-right symmetric, so a flip moves it from x to 15 - x and
changes nothing else, a colour-congruent augmentation of the x position.

Decodability (Fig. 3): a logistic-regression probe (pyclr.evaluate.decodability: L-BFGS, weight
decay chosen on a split of the training rows, where the paper trained decoders with Adam for 500
epochs and kept the best validation accuracy over a grid) per head layer (input, after each
layer's ReLU, output) for colour (chance 1/10), scale (1/6), position (the joint 16 x 16 = 256-way
class, chance 1/256) and, as pyclr also labels them, x and y (1/16 each), on the paper's splits
(pyclr.data.sprites_decoding_split: colour probes validate on 2 held-out scales and 10% held-out
positions, the others on 2 held-out colours). PCA (Fig. 4): the head input of the crop + jitter
model for 1000 training images.

Quick mode (a scaled-down stand-in): a random quarter of the images (3,840), downscaled to 32x32
(2x2 means), pyclr's SmallConvNet (three 3x3 stride-2 convolutions, a 128-unit dense layer)
instead of ResNet-18, a 128-128-32 head, 6 epochs per model (180 steps), probes at one weight decay (1e-3,
100 L-BFGS iterations). The decoding splits are the paper's, restricted to the subset.

Writes results/sprites_decodability.json, sprites_decodability_fig3.png, sprites_decodability_fig4.png.
"""
from __future__ import annotations

import os
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

import pyclr
from pyclr.analysis import pca_embedding
from pyclr.data import sprites_decoding_split
from pyclr.evaluate import decodability, extract_features
from pyclr.train.presets import build_augment, build_dataset, build_encoder, build_head, device_of, resolve_config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

POLICIES = ("sprites_none", "sprites_jitter", "sprites_crop", "sprites_crop+jitter")
MODEL_NAMES = {"untrained": "untrained", "sprites_none": "no augmentation", "sprites_jitter": "colour jitter",
               "sprites_crop": "random crop", "sprites_crop+jitter": "crop + jitter"}
LABELS = ("colour", "scale", "position", "x", "y")
CHANCE = {"colour": 1 / 10, "scale": 1 / 6, "position": 1 / 256, "x": 1 / 16, "y": 1 / 16}
LAYERS = ("head input", "layer 1", "layer 2", "output")
SPRITE_SIZE = 64  # pyclr.data.Sprites draws 64x64 images (checked against the data in main)
PAPER = {
    "figures": "Fig. 3 (decodability per head layer, 4 augmentation settings + untrained), Fig. 4 (PCA); no numbers",
    "crop+jitter": "colour, scale and position more decodable early in the head than at its output",
    "none": "qualitatively the same pattern through the head as crop + jitter",
    "crop": "colour decodability raised in all but the last head layer",
    "jitter": "colour washed out, position decodability raised",
    "pca": "head-input PCA of the crop + jitter model is organised by colour, scale and position",
}


def settings(quick: bool) -> dict:
    if quick:
        return {"epochs": 6, "fraction": 0.25, "downscale": 2, "batch_size": 128,
                "encoder": {"name": "small_convnet", "in_channels": 3, "input_size": 32, "feature_dim": 128},
                "head": {"hidden_dim": 128, "out_dim": 32, "num_layers": 3, "batch_norm": False,
                         "output_bias": False},
                "probe": {"weight_decay": 1e-3, "max_iter": 100}, "pca_images": 1000, "seed": 0}
    return {"epochs": 50, "fraction": 1.0, "downscale": 1, "batch_size": 128,
            "encoder": {"name": "resnet18", "cifar_stem": True},
            "head": {"hidden_dim": 512, "out_dim": 128, "num_layers": 3, "batch_norm": False, "output_bias": False},
            "probe": {}, "pca_images": 1000, "seed": 0}


class SpriteTensors(Dataset):
    """Materialised sprites: ``(image, {colour, scale, x, y, position})`` per item."""

    def __init__(self, images: torch.Tensor, labels: dict):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index], {name: values[index] for name, values in self.labels.items()}


def materialise(sprites, indices: list[int], downscale: int) -> SpriteTensors:
    """The chosen items once (each is drawn with 4x4 supersampling), downscaled by ``downscale``
    (means over ``downscale`` x ``downscale`` blocks) in quick mode."""
    items = [sprites[i] for i in indices]
    images = torch.stack([image for image, _ in items])
    if downscale > 1:
        images = F.avg_pool2d(images, downscale)
    labels = {name: torch.tensor([item_labels[name] for _, item_labels in items]) for name in items[0][1]}
    return SpriteTensors(images, labels)


def subset_indices(n: int, fraction: float, seed: int) -> list[int]:
    if fraction >= 1:
        return list(range(n))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return sorted(order[:round(n * fraction)].tolist())


def decoding_splits(indices: list[int], seed: int) -> dict:
    """The paper's held-out splits (on all 15,360 items), as positions within ``indices``."""
    where = {item: position for position, item in enumerate(indices)}
    splits = {}
    for label in LABELS:
        train, test = sprites_decoding_split(label, seed=seed)
        splits[label] = ([where[i] for i in train if i in where], [where[i] for i in test if i in where])
    return splits


def run_config(cfg: dict) -> dict:
    run_cfg = resolve_config({"preset": "sprites", "head": cfg["head"],
                              "train": {"epochs": cfg["epochs"], "batch_size": cfg["batch_size"], "optimizer": "adam",
                                        "lr": 1e-3, "temperature": 0.5, "weight_decay": 0.0, "warmup_epochs": 0,
                                        "schedule": "constant",
                                        "seed": cfg["seed"]}})
    run_cfg["encoder"] = dict(cfg["encoder"])  # replaced, not merged: the preset's ResNet options do not apply
    # What runs, not the preset's leftovers: one model per policy at the materialised size, and the
    # decodability probes (settings["probe"]) in place of the preset's linear evaluation.
    size = SPRITE_SIZE // cfg["downscale"]
    run_cfg["augment"] = {"policies": list(POLICIES), "size": [size, size]}
    run_cfg.pop("eval", None)
    run_cfg["description"] = (
        f"Hermann et al.: sprites ({cfg['fraction']:g} of the images at {size}x{size}), one model per "
        f"augmentation policy, {cfg['encoder']['name']}, {cfg['head']['hidden_dim']}-{cfg['head']['hidden_dim']}-"
        f"{cfg['head']['out_dim']} head (no output bias), Adam 1e-3, batch {cfg['batch_size']}, tau 0.5, "
        f"{cfg['epochs']} epochs")
    return run_cfg


def fresh_model(run_cfg: dict, seed: int):
    torch.manual_seed(seed)  # one initialisation for every policy and the untrained baseline
    encoder = build_encoder(run_cfg["encoder"])
    return encoder, build_head(run_cfg["head"], encoder)


def train_policy(policy: str, run_cfg: dict, data: SpriteTensors, seed: int, device) -> tuple:
    encoder, head = fresh_model(run_cfg, seed)
    size = tuple(data.images.shape[-2:])
    augment = build_augment({"policy": policy, "size": list(size)})
    started = time.perf_counter()
    result = pyclr.train(encoder, data, augment=augment, head=head, device=device, progress=False, **run_cfg["train"])
    return encoder, head, {"train_time_s": time.perf_counter() - started,
                           "loss": [round(r["loss"], 4) for r in result.history]}


def decode(encoder, head, data, splits, cfg, device) -> dict:
    """{layer name: {label: accuracy}}."""
    table = decodability(encoder, head, data, list(LABELS), splits=splits, device=device, seed=cfg["seed"],
                         **cfg["probe"])
    return {LAYERS[layer]: accuracies for layer, accuracies in table.items()}


def pca_of_head_input(encoder, data, cfg, device) -> dict:
    """Fig. 4: the first two principal components of the head input for ``pca_images`` images."""
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg["seed"] + 1))[:cfg["pca_images"]]
    subset = SpriteTensors(data.images[pick], {k: v[pick] for k, v in data.labels.items()})
    features, labels = extract_features(encoder, subset, device=device)
    pca = pca_embedding(features.float().cpu(), 2)
    return {"coords": pca.coords.tolist(), "explained_variance_ratio": pca.explained_variance_ratio.tolist(),
            "labels": {k: v.tolist() for k, v in labels.items()}}


def print_table(name: str, table: dict) -> None:
    print(f"{MODEL_NAMES[name]}: decodability per layer ({', '.join(LABELS)})")
    for layer, accuracies in table.items():
        print(f"  {layer:10} " + " ".join(f"{accuracies[label]:6.3f}" for label in LABELS), flush=True)


def checks(tables: dict) -> dict:
    """The paper's claims, read off the tables: early layers vs the output, crop vs none on colour,
    jitter vs none on colour and position."""
    out = {}
    for name, table in tables.items():
        out[f"{name}: head input > output"] = {
            label: table["head input"][label] > table["output"][label] for label in ("colour", "scale", "position")}
    if "sprites_crop" in tables and "sprites_none" in tables:
        crop, none = tables["sprites_crop"], tables["sprites_none"]
        out["crop raises colour over no augmentation (per layer)"] = {
            layer: crop[layer]["colour"] > none[layer]["colour"] for layer in LAYERS}
    if "sprites_jitter" in tables and "sprites_none" in tables:
        jitter, none = tables["sprites_jitter"], tables["sprites_none"]
        out["jitter lowers colour below no augmentation (per layer)"] = {
            layer: jitter[layer]["colour"] < none[layer]["colour"] for layer in LAYERS}
        out["jitter raises position over no augmentation (per layer)"] = {
            layer: jitter[layer]["position"] > none[layer]["position"] for layer in LAYERS}
    return out


def plot_decodability(tables: dict, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ("colour", "scale", "position")
    models = list(tables)
    fig, axes = plt.subplots(len(rows), len(models), figsize=(2.4 * len(models), 2.2 * len(rows)),
                             squeeze=False, sharey="row")
    colours = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a"]
    for r, label in enumerate(rows):
        for c, name in enumerate(models):
            ax = axes[r][c]
            values = [tables[name][layer][label] for layer in LAYERS]
            ax.bar(range(len(LAYERS)), values, color=colours)
            ax.axhline(CHANCE[label], color="black", linestyle=":", linewidth=1)
            ax.set_xticks(range(len(LAYERS)), ["in", "1", "2", "out"], fontsize=8)
            if r == 0:
                ax.set_title(MODEL_NAMES[name], fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{label} accuracy", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_pca(pca: dict, palette: torch.Tensor, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    coords = torch.tensor(pca["coords"])
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.1))
    for ax, label in zip(axes, ("colour", "scale", "x", "y")):
        values = torch.tensor(pca["labels"][label])
        if label == "colour":  # each point in its own sprite colour
            ax.scatter(coords[:, 0], coords[:, 1], c=palette[values].numpy(), s=5)
        else:
            points = ax.scatter(coords[:, 0], coords[:, 1], c=values.numpy(), cmap="viridis", s=5)
            fig.colorbar(points, ax=ax, fraction=0.046)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    ratio = pca["explained_variance_ratio"]
    axes[0].set_xlabel(f"PC1 ({ratio[0]:.0%})"), axes[0].set_ylabel(f"PC2 ({ratio[1]:.0%})")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = _common.parser(__doc__)
    _common.add_run_options(parser, threads=True, resumable=True)
    args = _common.parse(parser)
    device = device_of(args.device)
    cfg = settings(args.quick)
    run_cfg = run_config(cfg)
    log = _common.run_log(args, "sprites_decodability", device, {"settings": cfg, "config": run_cfg})
    sprites = build_dataset(run_cfg["dataset"])
    indices = subset_indices(len(sprites), cfg["fraction"], cfg["seed"])
    started = time.perf_counter()
    data = materialise(sprites, indices, cfg["downscale"])
    print(f"{len(data)} images of {tuple(data.images.shape[1:])} in {time.perf_counter() - started:.0f} s", flush=True)
    if list(data.images.shape[-2:]) != run_cfg["augment"]["size"]:
        raise RuntimeError(f"images of {list(data.images.shape[-2:])}, config says {run_cfg['augment']['size']}")
    splits = decoding_splits(indices, cfg["seed"])

    def untrained():
        encoder, head = fresh_model(run_cfg, cfg["seed"])
        return {"decodability": decode(encoder.to(device), head.to(device), data, splits, cfg, device)}

    def trained(policy):
        encoder, head, training = train_policy(policy, run_cfg, data, cfg["seed"], device)
        unit = {"training": training, "decodability": decode(encoder, head, data, splits, cfg, device)}
        if policy == "sprites_crop+jitter":
            unit["pca"] = pca_of_head_input(encoder, data, cfg, device)
        return unit

    tables, runs, pca = {}, {}, None
    tables["untrained"] = log.unit("untrained", untrained)["decodability"]
    print_table("untrained", tables["untrained"])
    for policy in POLICIES:
        unit = log.unit(policy, lambda: trained(policy))
        runs[policy], tables[policy], pca = unit["training"], unit["decodability"], unit.get("pca", pca)
        print(f"{MODEL_NAMES[policy]}: {cfg['epochs']} epochs in {runs[policy]['train_time_s']:.0f} s, "
              f"loss {runs[policy]['loss']}", flush=True)
        print_table(policy, tables[policy])
    os.makedirs(args.out, exist_ok=True)
    suffix = " (quick: scaled-down stand-in)" if args.quick else ""
    plot_decodability(tables, os.path.join(args.out, "sprites_decodability_fig3.png"),
                      "Fig. 3: decodability through the projection head (dotted: chance)" + suffix)
    plot_pca(pca, sprites.palette, os.path.join(args.out, "sprites_decodability_fig4.png"),
             "Fig. 4: PCA of the head input, crop + jitter model" + suffix)
    flags = checks(tables)
    for claim, values in flags.items():
        print(f"{claim}: {values}")
    path = os.path.join(args.out, "sprites_decodability.json")
    _common.write_json(path, {**_common.header(args.quick, device), "settings": cfg, "config": run_cfg,
                              "images": len(data), "image_size": list(data.images.shape[1:]),
                              "split_sizes": {label: [len(a), len(b)] for label, (a, b) in splits.items()},
                              "chance": CHANCE, "results": {"decodability": tables, "training": runs, "checks": flags,
                                                             "pca_crop+jitter_head_input": pca},
                              "paper": PAPER})
    log.close()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
