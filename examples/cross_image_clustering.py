"""The [Re] paper's Experiment 4 (Figs. 4-8): cross-image clustering. K-Means on the pixels of
a whole batch of images at once (shared centroids, SPEC.md section 3 cross-image mode), so
that one cluster, and one colour, can pick out the same kind of part in every image.

The paper's claim is qualitative (a SimCLR v2 ResNet-50 2x colours the eyes, noses and ears of
different dogs alike). Beside the figures this script measures two things the claim implies:

- consistency: the batch also holds a hue-rotated copy and a mirrored copy of every image; a
  feature that names a part gives the copy's pixels the cluster of the original's pixels.
  Reported: the fraction of pixels whose shared-centroid label matches the original's
  (mirrored back for the flip), with the level that independent labellings of the same
  cluster sizes would reach by chance;
- sharing: how many of the distinct images each cluster appears in (at least 5% of an image's
  pixels), 1 = clusters that are private to one image, B = every cluster in every image;
- the layout null: the same agreement between two different images at the same pixel. Clusters
  that follow the position in the map (the zero-padded border, say) and not the content agree
  there as well as with a copy: consistency means something only above this level.

for the encoder's block groups, its randomly initialised twin and the raw pixels (the image
area-downsampled to each block group's map).

    python examples/cross_image_clustering.py --quick                     # 2-core CPU, minutes
    python examples/cross_image_clustering.py --checkpoint resnet50-2x.pth --image dogs/*.jpg   # GPU

The encoder options are those of examples/local_features.py (see its docstring for how to get
a converted SimCLR ResNet-50; without --checkpoint it trains, or loads from its cache, the same
self-trained ResNet, so run that script first to share the training). Quick mode: the six
natural photographs (an astronaut, a cat, coffee, a rocket, a temple, a flower) at 224x224, a
ResNet-18 trained for a minute or two: a scaled-down stand-in for the paper's dog batches.
Writes results/cross_image_clustering.json and cross_image_clustering*.png.
"""
from __future__ import annotations

import os
import sys

import torch

from pyclr.cluster import kmeans
from pyclr.data.augment import adjust_hue
from pyclr.render import (consistent_colours, draw_figures, extract_features, figure_grid, overlay,
                          square_image, to_rgb_uint8, upsample_labels, write_png)
from pyclr.train.presets import device_of

# the sibling example owns the encoder options and the self-trained encoder (one copy of each)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local_features import (SETTINGS, encoder_and_inputs, mean_over_k, parse_args, random_twin,  # noqa: E402
                            raw_pixels, timed)

import _common  # noqa: E402

TAPS = ("block1", "block2", "block3", "block4")
FIGURE_TAPS = ("block3", "block4")  # the [Re] paper's Figs. 7 and 4-5, 8
KS = (2, 4, 6, 8)
HUE_SHIFT = 0.2  # a turn fraction within SimCLR's colour jitter (hue 0.2 at strength 1)
PRESENT = 0.05   # a cluster is in an image when it holds this share of the image's pixels
CONSISTENCY_K = 6
TILE = 96        # figure tiles: a batch figure has a row per image; PNGs stay under 500 KB

PAPER = {
    "claim": "Cross-image K-Means on block group 4 (and 3) of a SimCLR v2 ResNet-50 2x gives the same colour to "
             "parts with the same meaning across a batch (dogs' faces, ears, eyes, noses; truck cabs vs dogs); "
             "block group 3 looks more consistent across images than block group 4. Qualitative: figures, no "
             "numbers.",
    "figures": "[Re] Figs. 4 (one breed, block4, k = 8), 5-6 (several breeds, block4, k = 2..8), 7 (block3, "
               "k = 8), 8 (dogs and trucks, block4)",
    "re_paper_time": "10 min 8 s to visualise one batch on a 4-core i7-4810MQ CPU (scikit-learn KMeans, "
                     "n_init 10)",
}


# --- the batch ----------------------------------------------------------------------------------

def batch_with_copies(images: torch.Tensor) -> torch.Tensor:
    """The images, then their hue-rotated copies, then their mirrored copies: (3B, 3, H, W)."""
    hue = adjust_hue(images, HUE_SHIFT).clamp(0, 1)
    return torch.cat([images, hue, images.flip(-1)])


def split_copies(labels: torch.Tensor):
    """(3B, h, w) labels -> originals, hue copies, mirrored copies mirrored back (each (B, h, w))."""
    original, hue, mirrored = labels.chunk(3)
    return original, hue, mirrored.flip(-1)


def shared_kmeans(points: torch.Tensor, k: int, n_init: int, seed: int) -> torch.Tensor:
    return kmeans(points, k, mode="cross_image", n_init=n_init, seed=seed).labels


def cross_image_labels(points: dict, ks, n_init: int, seed: int):
    """labels[tap][k] (3B, h, w) of one shared-centroid K-Means per tap and k, and seconds[tap][k] per batch."""
    labels, seconds = {}, {}
    for tap, feats in points.items():
        runs = {k: timed(shared_kmeans, feats, k, n_init, seed) for k in ks}
        labels[tap] = {k: out for k, (out, _) in runs.items()}
        seconds[tap] = {k: s for k, (_, s) in runs.items()}
    return labels, seconds


# --- measures -----------------------------------------------------------------------------------

def shares(labels: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k): the share of each image's pixels in each cluster."""
    flat = labels.flatten(1)
    counts = torch.zeros(len(flat), k).scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float))
    return counts / flat.shape[1]


def consistency(a: torch.Tensor, b: torch.Tensor, k: int) -> dict:
    """Share of pixels with the same shared-centroid label in a and b, its chance level (sum over
    clusters of the product of the two images' cluster shares) and Cohen's kappa, (agreement -
    chance) / (1 - chance), which discounts one big cluster agreeing with itself; mean over images."""
    same = (a == b).flatten(1).float().mean(1)
    chance = (shares(a, k) * shares(b, k)).sum(1)
    kappa = torch.where(chance < 1, (same - chance) / (1 - chance).clamp_min(1e-12), torch.ones_like(same))
    return {"agreement": same.mean().item(), "chance": chance.mean().item(), "kappa": kappa.mean().item()}


def same_pixel_other_image(original: torch.Tensor, k: int) -> dict:
    """:func:`consistency` of every ordered pair of different images, pixel by pixel: what a
    labelling that follows the position in the map, not the content, scores."""
    count = len(original)
    first, second = zip(*[(i, j) for i in range(count) for j in range(count) if i != j])
    return consistency(original[list(first)], original[list(second)], k)


def images_per_cluster(original: torch.Tensor, k: int) -> float:
    """Mean over the clusters present anywhere of the number of distinct images they appear in."""
    present = shares(original, k) >= PRESENT
    counts = present.sum(0)
    return counts[counts > 0].float().mean().item()


def measures(labels: dict, ks) -> dict:
    out = {}
    for tap, by_k in labels.items():
        row = {"hue": {}, "flip": {}, "other_image": {}, "images_per_cluster": {}}
        for k in ks:
            original, hue, mirrored = split_copies(by_k[k])
            row["hue"][k] = consistency(original, hue, k)
            row["flip"][k] = consistency(original, mirrored, k)
            row["other_image"][k] = same_pixel_other_image(original, k)
            row["images_per_cluster"][k] = images_per_cluster(original, k)
        out[tap] = row
    return out


# --- figures ------------------------------------------------------------------------------------

def batch_figure(images, names, labels: dict, tap: str, tile: int, path: str) -> str:
    """Rows: the distinct images; columns: k; colours shared by the batch (the [Re] paper's Fig. 5, transposed)."""
    count = len(names)
    small = torch.stack([square_image(im, tile) for im in images[:count]])
    maps = {tap: {k: m[:count] for k, m in labels[tap].items()}}
    figures = draw_figures(small, maps, cross_image=True, upsample="nearest", names=names).figures
    return write_png(path, figures[f"batch {tap}"])


def consistency_figure(batch, count: int, names, sources: dict, k: int, tile: int, path: str, shown: int = 3) -> str:
    """Rows: an image and its hue-rotated copy; columns: the image, then each source's shared clusters at k
    (the columns name the sources only: the labels must fit above small tiles)."""
    rows, row_names = [], []
    colours = {source: consistent_colours([labels[k]])[0] for source, labels in sources.items()}
    for i in range(min(shown, count)):
        for offset, suffix in ((0, ""), (count, " hue")):
            image = square_image(batch[offset + i], tile)
            tiles = [to_rgb_uint8(image)]
            for source, labels in sources.items():
                upsampled = upsample_labels(labels[k][offset + i], (tile, tile))
                tiles.append(overlay(image, upsampled, colours[source]))
            rows.append(tiles)
            row_names.append(names[i] + suffix)
    return write_png(path, figure_grid(rows, row_names, ["image"] + list(sources)))


# --- main ---------------------------------------------------------------------------------------

def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    mode = "quick" if args.quick else "full"
    setting = SETTINGS[mode]
    device = device_of(args.device)
    if args.quick and device.type == "cpu":
        torch.set_num_threads(2)
    load_before = os.getloadavg()[0]  # timings on a shared machine are only as good as its load
    encoder, normalize, encoder_info, images, names = encoder_and_inputs(args, setting, device)
    batch = batch_with_copies(images)
    points = {
        "trained": extract_features(encoder, batch, TAPS, device=device, normalize=normalize),
        "random": extract_features(random_twin(encoder, args.seed + 1), batch, TAPS, device=device,
                                   normalize=normalize),
    }
    points["raw_pixels"] = {tap: raw_pixels(batch, f.shape[1:3]).to(device) for tap, f in points["trained"].items()}
    print(f"batch of {len(batch)} ({len(names)} images, their hue-rotated and mirrored copies) at "
          f"{setting['image_size']}px; pixels per tap: "
          + ", ".join(f"{t} {f.shape[:3].numel()}" for t, f in points["trained"].items()), flush=True)
    labels, seconds, results = {}, {}, {}
    for source, feats in points.items():
        labels[source], seconds[source] = cross_image_labels(feats, KS, setting["n_init"], args.seed)
        results[source] = measures(labels[source], KS)
    report_table(results)

    os.makedirs(args.out, exist_ok=True)
    figures = [batch_figure(batch, names, labels["trained"], tap, TILE,
                            os.path.join(args.out, f"cross_image_clustering_{tap}.png")) for tap in FIGURE_TAPS]
    sources = {"raw pixels": labels["raw_pixels"]["block3"], "random": labels["random"]["block3"],
               "trained": labels["trained"]["block3"]}
    figures.append(consistency_figure(batch, len(names), names, sources, CONSISTENCY_K, TILE,
                                      os.path.join(args.out, "cross_image_clustering_hue.png")))
    path = os.path.join(args.out, "cross_image_clustering.json")
    _common.write_json(path, {**_common.header(args.quick, device, threads="cpu_threads"),
                              "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
                              "settings": {"image_size": setting["image_size"], "n_init": setting["n_init"],
                                           "taps": TAPS, "ks": KS, "hue_shift": HUE_SHIFT, "present_share": PRESENT,
                                           "normalize": normalize, "seed": args.seed, "images": names,
                                           "batch": len(batch),
                                           "hue_figure": {"tap": "block3", "k": CONSISTENCY_K, "images": names[:3]}},
                              "encoder": encoder_info,
                              "results": {"measures": results, "kmeans_seconds_per_batch": seconds},
                              "paper": PAPER, "figures": figures})
    print(f"wrote {path}")


def report_table(results: dict) -> None:
    """Consistency and sharing per source and tap, mean over k."""
    print("mean over k = " + ", ".join(map(str, KS)) + ": agreement / chance / kappa with the original's labels")
    print(f"{'':22}{'hue copy':>24}{'mirrored copy':>24}{'other image (null)':>24}{'images/cluster':>16}")
    for source, by_tap in results.items():
        for tap, row in by_tap.items():
            cells = [" / ".join(f"{mean_over_k({k: v[key] for k, v in row[copy].items()}):.3f}"
                                for key in ("agreement", "chance", "kappa")) for copy in ("hue", "flip", "other_image")]
            print(f"{source + ' ' + tap:22}{cells[0]:>24}{cells[1]:>24}{cells[2]:>24}"
                  f"{mean_over_k(row['images_per_cluster']):16.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
