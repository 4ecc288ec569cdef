"""Hermann et al. (2020), Sec. 2, Fig. 2, B.1, B.2 and B.3: SimCLR learns the hierarchy of the
hierarchical data. The paper's claims: through every projection-head layer, a reference item is
most similar to probes that share its top-level channel and least to probes that share only
its bottom-level one; at temperature 0.1 similarity falls off level by level (graded). In the
hierarchically constrained analysis, items of different top-level classes are the least
similar (best separated), and the lower temperature resolves more of the intermediate levels.
The paper gives figures only, no numbers.

    python examples/hierarchy_similarity.py --quick       # 2-core CPU, a few minutes
    python examples/hierarchy_similarity.py --quick --threads 1   # the same on a CPU shared with other jobs
    python examples/hierarchy_similarity.py               # GPU: the paper's 100 epochs

Setting: the "hierarchy" preset (4 levels, branching 10, 38x38 noise masks; LeNet encoder,
120-84-84 head; random 28x28 crops without resize; Adam 1e-3, batch 256) at two temperatures,
0.1 (the paper's) and 0.5 (the text does not name Fig. 2's other temperature). Like the
paper's JAX head, the head has no batch norm (the preset's ProjectionHead default has it).
10% of the items are held out of training (Fig. B.3's validation items). Adam's rate stays
at 1e-3 throughout (schedule "constant": the paper names no decay); no warm-up, no weight decay.

After every epoch (epoch 0 = the untrained model, the same initialisation for both
temperatures) it measures, for the head input and each head layer:
- channel preference (Fig. 2 with train-set probes, Fig. B.1 with random masks): 200
  reference items and their probes; the 38x38 items are centre-cropped to the LeNet's 28x28;
- hierarchically constrained similarity (Fig. B.2 on 200 training items, Fig. B.3 on 200
  held-out items): two random 28x28 crops of each.

Writes results/hierarchy_similarity.json and hierarchy_similarity_{fig2,figB1,figB2,figB3}.png.
Quick mode trains 3 epochs instead of 100: a scaled-down stand-in.
"""
from __future__ import annotations

import math
import os
import sys
import time

import torch
from torch.utils.data import Subset

import pyclr
from pyclr.analysis import channel_preference, channel_probes, hierarchical_similarity
from pyclr.data import InMemory
from pyclr.data.augment import crop_without_resize
from pyclr.evaluate import layer_activations
from pyclr.train.presets import build_augment, build_dataset, build_encoder, build_head, device_of, resolve_config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

TEMPERATURES = (0.1, 0.5)
LAYERS = ("head input", "layer 1 (120)", "layer 2 (84)", "output (84)")
LEVEL_NAMES = ("top", "level 2", "level 3", "bottom")
CROP = 28
PAPER = {
    "figures": "Fig. 2 (train-set probes), B.1 (random probes), B.2 (train items), B.3 (held-out items); no numbers",
    "channel_preference": "at every head layer similarity is highest for the probe matching the top level and "
                          "lowest for the one matching only the bottom level; graded by level at tau 0.1",
    "hierarchical_similarity": "across-class similarity is lowest for different top-level classes; lower "
                               "levels are less separated; tau 0.1 resolves more intermediate structure",
}


def settings(quick: bool) -> dict:
    return {"epochs": 3 if quick else 100, "temperatures": list(TEMPERATURES), "references": 200, "items": 200,
            "held_out_fraction": 0.1, "seed": 0}


def config(epochs: int) -> dict:
    return resolve_config({"preset": "hierarchy",
                           "head": {"batch_norm": False},
                           "train": {"epochs": epochs, "lr": 1e-3, "weight_decay": 0.0, "warmup_epochs": 0,
                                     "schedule": "constant"}})


def split_items(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    held = round(n * fraction)
    return sorted(order[held:]), sorted(order[:held])


def centre_crop(x: torch.Tensor, size: int = CROP) -> torch.Tensor:
    top = (x.shape[-2] - size) // 2
    left = (x.shape[-1] - size) // 2
    return x[..., top:top + size, left:left + size]


def two_views(images: torch.Tensor, seed: int) -> torch.Tensor:
    """(n, 2, C, 28, 28): two random crops of each item, as in training (fixed across epochs)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([crop_without_resize(images, CROP, generator) for _ in range(2)], 1)


def probe_sets(dataset, images, ancestors, train_idx, held_idx, cfg) -> dict:
    """The fixed inputs of the four analyses."""
    n, seed = cfg["references"], cfg["seed"]
    sets = {}
    for source in ("train", "random"):
        items = train_idx if source == "train" else None  # references the model trained on
        refs, probes = channel_probes(dataset, n, source=source, items=items, seed=seed)
        sets[f"channel_{source}"] = (centre_crop(refs), centre_crop(probes))
    generator = torch.Generator().manual_seed(seed + 1)
    for name, pool in (("similarity_train", train_idx), ("similarity_held_out", held_idx)):
        pick = torch.tensor(pool)[torch.randperm(len(pool), generator=generator)[:cfg["items"]]]
        sets[name] = (two_views(images[pick], seed + 2), ancestors[pick])
    return sets


def analyse(encoder, head, sets: dict, device) -> dict:
    """Every analysis at every layer: {analysis: [per layer result]}."""
    out = {}
    for source in ("train", "random"):
        refs, probes = sets[f"channel_{source}"]
        layers = layer_activations(encoder, torch.cat([refs.unsqueeze(1), probes], 1), head=head, device=device)
        prefs = [channel_preference(layer[:, 0], layer[:, 1:]) for layer in layers]
        out[f"channel_{source}"] = [{"mean": p.mean.tolist(), "sem": p.sem.tolist()} for p in prefs]
    for name in ("similarity_train", "similarity_held_out"):
        views, ancestors = sets[name]
        layers = layer_activations(encoder, views, head=head, device=device)
        sims = [hierarchical_similarity(layer, ancestors) for layer in layers]
        out[name] = [{"within": _floats(s.within), "across": _floats(s.across), "across_view": _float(s.across_view),
                      "within_pairs": s.within_pairs.tolist(), "across_pairs": s.across_pairs.tolist()}
                     for s in sims]
    return out


def _float(value: float):
    return None if math.isnan(value) else value  # JSON has no NaN


def _floats(values: torch.Tensor) -> list:
    return [_float(v) for v in values.tolist()]


def run_temperature(temperature, cfg, run_cfg, train_set, sets, device) -> dict:
    torch.manual_seed(cfg["seed"])  # the same initialisation at every temperature (as the paper)
    encoder = build_encoder(run_cfg["encoder"])
    head = build_head(run_cfg["head"], encoder)
    history = [{"epoch": 0, **analyse(encoder.to(device), head.to(device), sets, device)}]

    def after_epoch(epoch, trained_encoder):
        history.append({"epoch": epoch + 1, **analyse(trained_encoder, head, sets, device)})

    started = time.perf_counter()
    result = pyclr.train(encoder, train_set, augment=build_augment(run_cfg["augment"]), head=head, device=device,
                         progress=False, on_epoch_end=after_epoch,
                         **{**run_cfg["train"], "temperature": temperature, "seed": cfg["seed"]})
    return {"temperature": temperature, "train_time_s": time.perf_counter() - started,
            "loss": [round(r["loss"], 4) for r in result.history], "analyses": history}


def checks(final: dict) -> dict:
    """Whether the last epoch shows the paper's claims, per layer."""
    out = {}
    for source in ("train", "random"):
        rows = final[f"channel_{source}"]
        out[f"channel_{source}_top_level_highest"] = [r["mean"][0] == max(r["mean"][:4]) for r in rows]
        out[f"channel_{source}_bottom_level_lowest"] = [r["mean"][3] == min(r["mean"][:4]) for r in rows]
        out[f"channel_{source}_graded"] = [all(a > b for a, b in zip(r["mean"][:3], r["mean"][1:4])) for r in rows]
    for name in ("similarity_train", "similarity_held_out"):
        rows = final[name]
        out[f"{name}_top_level_across_lowest"] = [
            r["across"][0] == min(v for v in r["across"] if v is not None) for r in rows]
        out[f"{name}_across_rises_with_level"] = [
            all(a < b for a, b in zip(r["across"][:-1], r["across"][1:]) if a is not None and b is not None)
            for r in rows]
    return out


def print_final(temperature: float, final: dict) -> None:
    for source in ("train", "random"):
        print(f"tau {temperature}: channel preference ({source} probes), matched top..bottom, baseline:")
        for name, row in zip(LAYERS, final[f"channel_{source}"]):
            print(f"  {name:14}" + " ".join(f"{v:7.3f}" for v in row["mean"]))
    for name in ("similarity_train", "similarity_held_out"):
        print(f"tau {temperature}: hierarchical similarity ({name[11:]} items): within / across per level, across-view")
        for layer, row in zip(LAYERS, final[name]):
            within = " ".join("   nan" if v is None else f"{v:6.3f}" for v in row["within"])
            across = " ".join("   nan" if v is None else f"{v:6.3f}" for v in row["across"])
            print(f"  {layer:14} within {within} | across {across} | views {row['across_view']:.3f}")


def plot_channel(runs, key: str, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = ["#e7298a", "#7570b3", "#1b9e77", "#d95f02", "black"]
    labels = [f"matches {n}" for n in LEVEL_NAMES] + ["baseline (no match)"]
    fig, axes = plt.subplots(len(runs), len(LAYERS), figsize=(3.2 * len(LAYERS), 2.6 * len(runs)),
                             squeeze=False)  # own y-range: the levels differ by little
    for row, run in zip(axes, runs):
        epochs = [h["epoch"] for h in run["analyses"]]
        for col, (ax, layer) in enumerate(zip(row, LAYERS)):
            for kind, (colour, label) in enumerate(zip(colours, labels)):
                ax.plot(epochs, [h[key][col]["mean"][kind] for h in run["analyses"]], color=colour, label=label,
                        marker="o", markersize=3)
            ax.set_title(f"tau {run['temperature']}: {layer}", fontsize=9)
            ax.set_xlabel("epoch")
        row[0].set_ylabel("cosine similarity")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_similarity(runs, key: str, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = ["#e7298a", "#7570b3", "#1b9e77", "#d95f02"]
    fig, axes = plt.subplots(len(runs), len(LAYERS), figsize=(3.2 * len(LAYERS), 2.6 * len(runs)),
                             squeeze=False)  # own y-range: the levels differ by little
    for row, run in zip(axes, runs):
        epochs = [h["epoch"] for h in run["analyses"]]
        for col, (ax, layer) in enumerate(zip(row, LAYERS)):
            for level, colour in enumerate(colours):
                for part, style in (("within", "-"), ("across", "--")):
                    values = [h[key][col][part][level] for h in run["analyses"]]
                    if all(v is None for v in values):
                        continue  # within-class at the leaf level: every item is its own class
                    ax.plot(epochs, [math.nan if v is None else v for v in values], style, color=colour,
                            label=f"{part}, {LEVEL_NAMES[level]}")
            ax.plot(epochs, [h[key][col]["across_view"] for h in run["analyses"]], ":", color="purple",
                    label="across views (same item)")
            ax.set_title(f"tau {run['temperature']}: {layer}", fontsize=9)
            ax.set_xlabel("epoch")
        row[0].set_ylabel("cosine similarity")
    axes[0][-1].legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = _common.parser(__doc__)
    _common.add_run_options(parser, threads=True, resumable=True)
    parser.add_argument("--epochs", type=_common.positive_int, default=None, help="override the mode's epochs (quick 3, full 100)")
    args = _common.parse(parser)
    device = device_of(args.device)
    cfg = settings(args.quick)
    if args.epochs is not None:
        cfg["epochs"] = args.epochs
    run_cfg = config(cfg["epochs"])
    log = _common.run_log(args, "hierarchy_similarity", device, {"settings": cfg, "config": run_cfg})
    dataset = build_dataset(run_cfg["dataset"])
    held = InMemory(dataset)  # every item once: training need not redraw 4 masks per item per epoch
    images, ancestors = held.images, held.labels["ancestors"]
    train_idx, held_idx = split_items(len(dataset), cfg["held_out_fraction"], cfg["seed"])
    train_set = Subset(held, train_idx)
    sets = probe_sets(dataset, images, ancestors, train_idx, held_idx, cfg)
    runs = []
    for temperature in cfg["temperatures"]:
        run = log.unit(f"tau{temperature}", lambda: run_temperature(temperature, cfg, run_cfg, train_set, sets, device))
        runs.append(run)
        print(f"tau {temperature}: {cfg['epochs']} epochs in {run['train_time_s']:.0f} s, loss {run['loss']}",
              flush=True)
        print_final(temperature, run["analyses"][-1])
    os.makedirs(args.out, exist_ok=True)
    figures = {"fig2": ("channel_train", "Fig. 2: similarity of references to train-set probes"),
               "figB1": ("channel_random", "Fig. B.1: similarity of references to random-mask probes"),
               "figB2": ("similarity_train", "Fig. B.2: hierarchically constrained similarity, train items"),
               "figB3": ("similarity_held_out", "Fig. B.3: hierarchically constrained similarity, held-out items")}
    for name, (key, title) in figures.items():
        path = os.path.join(args.out, f"hierarchy_similarity_{name}.png")
        plot = plot_channel if key.startswith("channel") else plot_similarity
        plot(runs, key, path, title + (" (quick: scaled-down stand-in)" if args.quick else ""))
    results = {"untrained": runs[0]["analyses"][0],
               "runs": runs,
               "checks_at_last_epoch": {str(run["temperature"]): checks(run["analyses"][-1]) for run in runs},
               "untrained_checks": checks(runs[0]["analyses"][0])}
    path = os.path.join(args.out, "hierarchy_similarity.json")
    _common.write_json(path, {**_common.header(args.quick, device), "settings": cfg, "config": run_cfg,
                              "layers": list(LAYERS),
                              "channel_preference_order": [f"matches {n}" for n in LEVEL_NAMES] + ["baseline"],
                              "notes": ["38x38 probe items are centre-cropped to 28x28 for the LeNet",
                                        "head without batch norm (the paper's plain 120-84-84 MLP)",
                                        "train-set probes: references drawn from the training items only",
                                        "within-class similarity at the bottom level is undefined (null): "
                                        "every item is its own leaf class; across-view similarity stands for it"],
                              "results": results, "paper": PAPER})
    log.close()
    for temperature, flags in results["checks_at_last_epoch"].items():
        print(f"tau {temperature} checks (per layer): " + "; ".join(f"{k}={v}" for k, v in flags.items()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
