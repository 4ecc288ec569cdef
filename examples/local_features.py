"""Intriguing Properties section 3.2 (Fig. 9; the [Re] paper's Figs. 1-3 and 10-15): SimCLR
learns local features that group image regions by object parts, more so in later block groups,
unlike K-Means on the raw pixels; and this does not hinge on K-Means (Ward and bisecting
K-Means give similar masks).

Clusters the l2-normalised per-pixel features of each ResNet block group (layer1..layer4 =
block1..block4) with K-Means for k = 2, 4, 6, 8 (colours consistent across k), beside the
raw-pixel K-Means baseline (the image area-downsampled to the feature map), and compares
K-Means (pyclr's kernels and scikit-learn's), Ward and bisecting K-Means. Besides the figures
it measures, per block group and k: each method's time per image, the adjusted Rand index
(ARI) between the methods, between the features' clusters and the raw-pixel clusters at the
same resolution, and all of it for a randomly initialised twin of the encoder (what the
architecture alone gives).

    python examples/local_features.py --quick                       # 2-core CPU, minutes
    python examples/local_features.py --checkpoint resnet50-2x.pth  # GPU, 448x448 as the [Re] paper
    python examples/local_features.py --checkpoint r50.pth --image dog1.jpg dog2.jpg --normalize none

Encoder. ``--checkpoint`` takes a ResNet state dict in torchvision's layout (depth, width and
stem are read off the tensors; a ``{"state_dict": ...}`` wrapper and a ``module.`` prefix are
fine) or a pyclr run folder. For SimCLR's own weights: download the TensorFlow checkpoints of
SimCLR v1 (github.com/google-research/simclr: ResNet50_1x, _2x, _4x) and convert them with
github.com/tonylins/simclr-converter (``python convert.py ResNet50_2x/model.ckpt-225206
resnet50-2x.pth``), which writes torchvision's layout; those models take [0, 1] inputs without
mean/std standardisation, hence ``--normalize none`` (the default here). The [Re] paper used
SimCLR v2's ResNet-50 2x converted by github.com/Separius/SimCLRv2-Pytorch, whose keys are
not torchvision's (they need renaming first). A supervised torchvision ResNet-50
(``torch.save(torchvision.models.resnet50(weights="IMAGENET1K_V2").state_dict(), path)``) is
the papers' supervised comparison; use ``--normalize imagenet`` with it.

Without ``--checkpoint`` the script trains its own encoder with pyclr.train (SimCLR, NT-Xent)
on random patches of the images it then clusters (by default the six natural photographs
shipped with scikit-image and scikit-learn, pyclr.data.natural_images): in quick mode a
ResNet-18 for about a hundred steps on the CPU, a scaled-down stand-in that says nothing about
how an ImageNet-trained SimCLR behaves. The trained weights are cached (torchvision layout,
``--cache``) and loaded back through the same path as a user's checkpoint; the
cross-image clustering example reuses them.

Writes results/local_features.json and local_features_*.png (masks of one image per block
group and k, the raw-pixel row, the random twin's masks, the three methods on block3, and a
plot of the agreement measures).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

import pyclr
from pyclr.cluster import bisecting, kmeans, ward
from pyclr.data import SimCLRAugment, natural_images, resized_crop, sample_crop_boxes
from pyclr.models import ResNet
from pyclr.render import default_encoder, draw_figures, extract_features, load_images, square_image, write_png
from pyclr.train.presets import device_of

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

TAPS = ("block1", "block2", "block3", "block4")
KS = (2, 4, 6, 8)
METHODS = ("kmeans", "kmeans_sklearn", "ward", "bisecting")
METHOD_ROWS = {"kmeans": "k-means", "ward": "Ward", "bisecting": "bisecting"}
METHOD_LABELS = {"kmeans": "k-means (pyclr)", "kmeans_sklearn": "k-means (scikit-learn)", "ward": "Ward",
                 "bisecting": "bisecting k-means"}
# the ARI columns of the printed table: JSON key -> short header
ARI_COLUMNS = {"kmeans_vs_raw_pixels": "trained~raw", "random_kmeans_vs_raw_pixels": "random~raw",
               "kmeans_vs_random_kmeans": "trained~random", "kmeans_vs_kmeans_sklearn": "pyclr~sklearn",
               "kmeans_vs_ward": "kmeans~ward", "kmeans_vs_bisecting": "kmeans~bisect",
               "ward_vs_bisecting": "ward~bisect"}
SHOWCASE = "chelsea"  # the cat's face: the closest of the shipped photographs to Fig. 9's dog

SETTINGS = {
    # image_size 224 gives block maps of 56, 28, 14 and 7 pixels on an ImageNet-stem ResNet.
    "quick": {"image_size": 224, "tile": 112, "n_init": 10,
              "self_train": {"arch": "resnet18", "patches_per_image": 128, "patch": 64, "view": 48,
                             "crop_scale": [0.1, 0.5], "view_scale": [0.3, 1.0], "batch_size": 32,
                             "epochs": 5, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-6,
                             "temperature": 0.2, "warmup_epochs": 0.5, "seed": 0}},
    # The [Re] paper's 448x448 inputs: 14x14 block4 maps on a ResNet-50 (112x112 at block1).
    "full": {"image_size": 448, "tile": 112, "n_init": 10,
             "self_train": {"arch": "resnet50", "patches_per_image": 1024, "patch": 128, "view": 96,
                            "crop_scale": [0.05, 0.5], "view_scale": [0.2, 1.0], "batch_size": 256,
                            "epochs": 100, "optimizer": "lars", "lr": None, "weight_decay": 1e-6,
                            "temperature": 0.2, "warmup_epochs": 10, "seed": 0}},
}

PAPER = {
    "claim": "Later block groups of a SimCLR ResNet-50 group pixels by object parts (a dog's eyes, nose, ears "
             "as k grows), unlike K-Means on the raw pixels; Ward and bisecting K-Means give masks consistent "
             "with K-Means (Ward a little finer). Qualitative: the papers give figures, no numbers.",
    "figures": "Chen et al. Fig. 9; [Re] Figs. 1 and 10-11 (block groups x k), 2 and 12 (raw pixels), "
               "3 and 13-15 (K-Means / Ward / bisecting per block group)",
    "re_paper_time": "32 s to visualise one image on a 4-core i7-4810MQ CPU (features, K-Means for k = 2..8 "
                     "on block groups 2-4, drawing); scikit-learn KMeans with init k-means++, n_init 10, "
                     "max_iter 300, tol 1e-4",
}


# --- images and encoders ------------------------------------------------------------------------

def load_inputs(paths, size: int):
    """(B, 3, size, size) images in [0, 1] and their names: the user's files, or the natural photographs."""
    if paths:
        return load_images(paths, size), [os.path.splitext(os.path.basename(p))[0] for p in paths]
    found = natural_images()
    return torch.stack([square_image(im, size) for im in found.values()]), list(found)


def image_patches(images: torch.Tensor, per_image: int, side: int, scale, seed: int) -> torch.utils.data.Dataset:
    """Random crops of the images, each one an instance: patches of one photograph are
    negatives of each other, so the encoder must tell the parts of an image apart (a handful of
    whole photographs would be told apart by their colours alone)."""
    generator = torch.Generator().manual_seed(seed)
    patches = []
    for image in images:
        for start in range(0, per_image, 128):  # chunks: grid_sample copies the expanded batch
            count = min(128, per_image - start)
            boxes = sample_crop_boxes(count, image.shape[1], image.shape[2], scale=tuple(scale), generator=generator)
            patches.append(resized_crop(image[None].expand(count, -1, -1, -1), boxes, side))
    return torch.utils.data.TensorDataset(torch.cat(patches))


def self_trained_encoder(images: torch.Tensor, spec: dict, device, cache_dir: str):
    """A ResNet trained with SimCLR on patches of ``images`` (see ``SETTINGS``), cached as a
    torchvision-layout state dict and loaded back with default_encoder (a user checkpoint's path).
    Returns (encoder, info)."""
    key = hashlib.sha1(json.dumps(spec, sort_keys=True).encode() + images.numpy().tobytes()).hexdigest()[:12]
    path = os.path.join(cache_dir, f"local_features_{spec['arch']}_{key}.pt")
    log = path.removesuffix(".pt") + ".json"  # how it was trained, for the results of later runs
    info = {"source": "self-trained (SimCLR on patches of the clustered images)", "settings": spec, "cache": path}
    if os.path.exists(path) and os.path.exists(log):
        print(f"loading the self-trained encoder cached in {path}", flush=True)
        with open(log) as f:
            return default_encoder(path), {**info, **json.load(f), "loaded_from_cache": True}
    torch.manual_seed(spec["seed"])
    encoder = ResNet(spec["arch"])
    patches = image_patches(images, spec["patches_per_image"], spec["patch"], spec["crop_scale"], spec["seed"])
    augment = SimCLRAugment.from_policy("simclr_imagenet", spec["view"], crop_scale=tuple(spec["view_scale"]))
    options = {k: spec[k] for k in ("batch_size", "epochs", "optimizer", "lr", "weight_decay", "temperature",
                                    "warmup_epochs", "seed")}
    print(f"training a {spec['arch']} with SimCLR on {len(patches)} patches ({spec['epochs']} epochs, "
          f"{len(patches) // spec['batch_size']} steps each) on {device}", flush=True)
    started = time.perf_counter()
    result = pyclr.train(encoder, patches, augment=augment, head={"hidden_dim": 512, "out_dim": 128},
                         device=device, progress=False, **options)
    seconds = time.perf_counter() - started
    print(f"  trained in {seconds:.0f} s, loss {result.history[0]['loss']:.3f} -> {result.history[-1]['loss']:.3f}",
          flush=True)
    training = {"train_time_s": seconds, "train_device": str(device), "loss": [e["loss"] for e in result.history]}
    os.makedirs(cache_dir, exist_ok=True)
    torch.save({k: v.cpu() for k, v in result.encoder.state_dict().items()}, path)
    with open(log, "w") as f:
        json.dump(training, f)
    return default_encoder(path), {**info, **training, "loaded_from_cache": False}


def random_twin(encoder: ResNet, seed: int) -> ResNet:
    """A randomly initialised ResNet of the encoder's shape: what the architecture alone gives."""
    if not isinstance(encoder, ResNet):
        raise TypeError(f"encoder: expected a pyclr ResNet (block1..block4 taps), got {type(encoder).__name__}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ResNet(encoder.arch, width=encoder.width, cifar_stem=encoder.cifar_stem,
                      in_channels=encoder.in_channels)


def encoder_and_inputs(args, setting: dict, device):
    """(encoder, normalize, info, images, names) as the arguments ask."""
    images, names = load_inputs(args.image, setting["image_size"])
    if args.checkpoint:
        encoder = default_encoder(args.checkpoint)
        return encoder, args.normalize == "imagenet", {"source": args.checkpoint}, images, names
    encoder, info = self_trained_encoder(images, setting["self_train"], device, args.cache)
    return encoder, False, info, images, names  # pyclr.train saw [0, 1] images


# --- clustering and measures --------------------------------------------------------------------

def cluster(features: torch.Tensor, method: str, k: int, n_init: int, seed: int) -> torch.Tensor:
    """(B, h, w) labels of each image's pixels clustered separately (Ward: cluster_taps, one tree for every k)."""
    if method == "kmeans":
        return kmeans(features, k, n_init=n_init, seed=seed).labels
    if method == "kmeans_sklearn":  # the [Re] paper's tool, as the peer of pyclr's kernels
        return kmeans(features, k, n_init=n_init, seed=seed, backend="sklearn").labels
    return bisecting(features, k, seed=seed).labels


def timed(fn, *args):
    """fn(*args) moved to the CPU (which waits for a GPU), and the seconds it took."""
    started = time.perf_counter()
    out = fn(*args).cpu()
    return out, time.perf_counter() - started


def cluster_taps(features: dict, methods, ks, n_init: int, seed: int):
    """labels[tap][method][k] (B, h, w) and seconds per image, seconds[tap][method][k]."""
    labels, seconds = {}, {}
    for tap, feats in features.items():
        labels[tap], seconds[tap] = {}, {}
        for method in methods:
            if method == "ward":  # one merge tree per image for every k: its time is split over the ks
                started = time.perf_counter()
                labels[tap][method] = {k: r.labels.cpu() for k, r in ward(feats, list(ks)).items()}
                share = (time.perf_counter() - started) / len(ks) / len(feats)
                seconds[tap][method] = {k: share for k in ks}
                continue
            runs = {k: timed(cluster, feats, method, k, n_init, seed) for k in ks}
            labels[tap][method] = {k: out for k, (out, _) in runs.items()}
            seconds[tap][method] = {k: s / len(feats) for k, (_, s) in runs.items()}
    return labels, seconds


def raw_pixels(images: torch.Tensor, size) -> torch.Tensor:
    """(B, h, w, 3): the images area-downsampled to a feature map's size, the raw-pixel
    baseline's points (pyclr.cluster.raw_pixel_kmeans makes them so for one image)."""
    return F.interpolate(images, size=tuple(size), mode="area").permute(0, 2, 3, 1).contiguous()


def raw_pixel_labels(images: torch.Tensor, size, ks, n_init: int, seed: int) -> dict:
    """{k: (B, h, w)}: the raw-pixel baseline at one feature map's size, each image its own
    problem (one batched call: image b draws from seed + b, as raw_pixel_kmeans(seed=seed + b))."""
    points = raw_pixels(images, size)
    return {k: kmeans(points, k, n_init=n_init, seed=seed).labels.cpu() for k in ks}


def mean_ari(a: torch.Tensor, b: torch.Tensor) -> float:
    """Adjusted Rand index of two (B, h, w) label maps, image by image, averaged over the images."""
    from sklearn.metrics import adjusted_rand_score

    return sum(adjusted_rand_score(x.flatten().numpy(), y.flatten().numpy()) for x, y in zip(a, b)) / len(a)


def agreement(labels: dict, raw: dict, random_labels: dict, ks) -> dict:
    """ARI per tap and k: method pairs, features vs raw pixels, trained vs random twin."""
    pairs = [("kmeans", m) for m in ("kmeans_sklearn", "ward", "bisecting") if m in next(iter(labels.values()))]
    pairs += [("ward", "bisecting")] if all(m in next(iter(labels.values())) for m in ("ward", "bisecting")) else []
    out = {}
    for tap, by_method in labels.items():
        row = {f"{a}_vs_{b}": {k: mean_ari(by_method[a][k], by_method[b][k]) for k in ks}
               for a, b in pairs if a in by_method and b in by_method}
        row["kmeans_vs_raw_pixels"] = {k: mean_ari(by_method["kmeans"][k], raw[tap][k]) for k in ks}
        row["random_kmeans_vs_raw_pixels"] = {k: mean_ari(random_labels[tap][k], raw[tap][k]) for k in ks}
        row["kmeans_vs_random_kmeans"] = {k: mean_ari(by_method["kmeans"][k], random_labels[tap][k]) for k in ks}
        out[tap] = row
    return out


def mean_over_k(by_k: dict) -> float:
    return sum(by_k.values()) / len(by_k)


# --- figures ------------------------------------------------------------------------------------

def showcase_index(names) -> int:
    return names.index(SHOWCASE) if SHOWCASE in names else 0


def draw_rows(images, rows: dict, index: int, tile: int, path: str) -> str:
    """One image's figure (rows: label maps {row: {k: (B, h, w)}}, columns: k) as a PNG of tiles of ``tile``²."""
    small = square_image(images[index], tile)[None]
    maps = {row: {k: m[index:index + 1] for k, m in by_k.items()} for row, by_k in rows.items()}
    figure = draw_figures(small, maps, upsample="nearest", names=["figure"]).figures["figure"]
    return write_png(path, figure)


def plot_agreement(measures: dict, seconds: dict, path: str) -> str:
    """ARI of the features' K-Means with the raw-pixel K-Means (trained, random twin) and
    between the methods, per block group, averaged over k; and the time per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taps = list(measures)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key, label in (("kmeans_vs_raw_pixels", "trained"), ("random_kmeans_vs_raw_pixels", "random twin")):
        axes[0].plot(taps, [mean_over_k(measures[t][key]) for t in taps], "o-", label=label)
    axes[0].set(title="K-Means of features vs of raw pixels", ylabel="ARI (mean over k, images)")
    for key in ("kmeans_vs_kmeans_sklearn", "kmeans_vs_ward", "kmeans_vs_bisecting", "ward_vs_bisecting"):
        values = [mean_over_k(measures[t][key]) if key in measures[t] else float("nan") for t in taps]
        first, second = key.split("_vs_")
        axes[1].plot(taps, values, "o-", label=f"{METHOD_LABELS[first]} vs {METHOD_LABELS[second]}")
    axes[1].set(title="agreement between methods (trained)", ylabel="ARI (mean over k, images)")
    for method in next(iter(seconds.values())):
        axes[2].semilogy(taps, [mean_over_k(seconds[t][method]) * 1e3 for t in taps], "o-",
                         label=METHOD_LABELS[method])
    axes[2].set(title="time per image (mean over k)", ylabel="ms")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- main ---------------------------------------------------------------------------------------

def parse_args(description: str = __doc__.splitlines()[0]):
    """The options of this script and of cross_image_clustering.py, which uses its encoder."""
    parser = _common.parser(description)
    parser.add_argument("--checkpoint", help="ResNet state dict in torchvision's layout, or a pyclr run folder "
                                             "(default: the encoder local_features.py trains, see its docstring)")
    parser.add_argument("--image", nargs="+", help="image files (default: the natural photographs)")
    parser.add_argument("--normalize", choices=("none", "imagenet"), default="none",
                        help="input standardisation for --checkpoint: none for converted SimCLR checkpoints, "
                             "imagenet for torchvision's supervised ones")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "pyclr-examples"),
                        help="folder for the self-trained encoder's weights (shared by the two scripts)")
    parser.add_argument("--seed", type=int, default=0)
    _common.add_run_options(parser)
    return _common.parse(parser)


def main() -> None:
    args = parse_args()
    mode = "quick" if args.quick else "full"
    setting = SETTINGS[mode]
    device = device_of(args.device)
    if args.quick and device.type == "cpu":
        torch.set_num_threads(2)
    load_before = os.getloadavg()[0]  # timings on a shared machine are only as good as its load
    encoder, normalize, encoder_info, images, names = encoder_and_inputs(args, setting, device)
    twin = random_twin(encoder, args.seed + 1)
    started = time.perf_counter()
    features = extract_features(encoder, images, TAPS, device=device, normalize=normalize)
    random_features = extract_features(twin, images, TAPS, device=device, normalize=normalize)
    feature_seconds = time.perf_counter() - started
    sizes = {tap: tuple(f.shape[1:3]) for tap, f in features.items()}
    print(f"{len(images)} images at {setting['image_size']}px; feature maps {sizes}", flush=True)

    labels, seconds = cluster_taps(features, METHODS, KS, setting["n_init"], args.seed)
    random_labels = {tap: by_method["kmeans"] for tap, by_method in
                     cluster_taps(random_features, ["kmeans"], KS, setting["n_init"], args.seed)[0].items()}
    raw = {tap: raw_pixel_labels(images, size, KS, setting["n_init"], args.seed) for tap, size in sizes.items()}
    measures = agreement(labels, raw, random_labels, KS)
    report_table(measures, seconds)

    os.makedirs(args.out, exist_ok=True)
    paths = write_figures(args.out, images, names, labels, random_labels, raw, measures, seconds, setting["tile"])
    path = os.path.join(args.out, "local_features.json")
    _common.write_json(path, {**_common.header(args.quick, device, threads="cpu_threads"),
                              "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
                              "settings": {**setting, "taps": TAPS, "ks": KS, "methods": METHODS,
                                           "normalize": normalize, "seed": args.seed, "images": names},
                              "encoder": encoder_info, "feature_map_sizes": sizes,
                              "results": {"ari": measures, "seconds_per_image": seconds,
                                          "feature_extraction_s": feature_seconds},
                              "paper": PAPER, "figures": paths})
    print(f"wrote {path}")


def write_figures(out, images, names, labels, random_labels, raw, measures, seconds, tile) -> list:
    index = showcase_index(names)
    smallest = TAPS[-1]
    trained_rows = {**{tap: labels[tap]["kmeans"] for tap in TAPS}, "raw pixels": raw[smallest]}
    random_rows = {**{f"{tap} random": random_labels[tap] for tap in TAPS}, "raw pixels": raw[smallest]}
    method_rows = {METHOD_ROWS[m]: labels["block3"][m] for m in ("kmeans", "ward", "bisecting")}
    return [
        draw_rows(images, trained_rows, index, tile, os.path.join(out, "local_features.png")),
        draw_rows(images, random_rows, index, tile, os.path.join(out, "local_features_random.png")),
        draw_rows(images, method_rows, index, tile, os.path.join(out, "local_features_methods.png")),
        plot_agreement(measures, seconds, os.path.join(out, "local_features_agreement.png")),
    ]


def report_table(measures: dict, seconds: dict) -> None:
    """The numbers of the JSON, averaged over k, one line per block group."""
    print("ARI, mean over k = " + ", ".join(map(str, KS)) + " and the images:")
    print(f"{'':8}" + "".join(f"{header:>16}" for header in ARI_COLUMNS.values()))
    for tap, row in measures.items():
        print(f"{tap:8}" + "".join(f"{mean_over_k(row[k]):16.3f}" if k in row else f"{'-':>16}" for k in ARI_COLUMNS))
    print("ms per image, mean over k:")
    for tap, row in seconds.items():
        print(f"{tap:8}" + "".join(f"  {m} {mean_over_k(s) * 1e3:8.1f}" for m, s in row.items()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
