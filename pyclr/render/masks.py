"""Cluster assignment masks end to end (Chen et al. 2021, section 3.2; the [Re] paper's
Experiments 2-4): one forward pass, per-pixel clustering per layer and k, colours kept
consistent across k, overlays, and one figure per image (rows: layers, columns: k)."""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..cluster import bisecting, kmeans, pixel_features, raw_pixel_kmeans, ward
from ..cluster.kmeans import SEED_LIMIT
from ..train.checkpoint import CHECKPOINT as RUN_CHECKPOINT
from ..train.checkpoint import load as read_checkpoint
from ..train.experiment import CONFIG as RUN_CONFIG
from ..train.experiment import load_run_encoder
from .._checks import check_bool, check_choice, check_device, check_int, check_size, describe, is_int, shown
from ._checks import int_tensor
from .figure import figure_grid
from .labels import UPSAMPLE_MODES, upsample_labels
from .overlay import import_cv2, overlay, to_rgb_uint8
from .palette import MAX_CLUSTERS, consistent_colours

METHODS = ("kmeans", "ward", "bisecting")
RAW_PIXELS = "raw pixels"
# torchvision's ImageNet statistics: what torchvision-layout checkpoints were trained on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class MaskResult:
    """What :func:`render_masks` and :func:`draw_figures` return.

    ``labels[row][k]``: ``(B, H, W)`` int64 cluster indices at the image size; ``colours[row][k]``:
    ``(B, k)`` palette indices (the same for every image in cross-image mode); ``figures``:
    ``{name: (h, w, 3) uint8 RGB}``, one per image (named as the image) and, in cross-image
    mode, one per row with the images as rows (``"batch <row>"``); ``paths``: ``{name:
    PNG path}`` when an output folder was given. Rows are named after the tap (``"block3"``),
    the tap and method when several methods are drawn (``"block3 ward"``), and ``"raw pixels"``.
    """

    labels: Dict[str, Dict[int, torch.Tensor]]
    colours: Dict[str, Dict[int, torch.Tensor]]
    figures: Dict[str, np.ndarray] = field(default_factory=dict)
    paths: Dict[str, str] = field(default_factory=dict)


def render_masks(encoder, images, taps: Sequence[str] = ("block2", "block3", "block4"),
                 ks: Sequence[int] = (2, 4, 6, 8), method: Union[str, Sequence[str]] = "kmeans",
                 cross_image: bool = False, upsample: str = "nearest", seed: int = 0, device=None,
                 out_dir: Optional[str] = None, raw_pixel_baseline: bool = False,
                 names: Optional[Sequence[str]] = None, normalize: bool = True, n_init: int = 10,
                 backend: str = "auto") -> MaskResult:
    """Masks of ``encoder``'s local features on ``images``, drawn as figures.

    Args:
        encoder: a pyclr encoder (``features(x, taps)``, e.g. :func:`default_encoder`); run in
            eval mode without gradients (its mode is restored afterwards).
        images: ``(B, 3, H, W)`` float in [0, 1] or uint8 (e.g. :func:`load_images`).
        taps: the encoder's block groups to cluster (rows of the figures).
        ks: cluster counts (columns), each >= 1 and at most the pixels of the smallest map.
        method: ``"kmeans"`` (:func:`pyclr.cluster.kmeans`, scikit-learn's settings as in the
            [Re] paper: k-means++, ``n_init`` restarts, 300 iterations, tol 1e-4), ``"ward"``
            or ``"bisecting"``; a list of methods draws one row per (tap, method).
        cross_image: cluster the pixels of all images together (shared centroids, and so shared
            colours), instead of each image separately.
        upsample: ``"nearest"`` or ``"bilinear"`` (see :func:`upsample_labels`).
        seed: seeds the clusterings (image ``b`` uses ``seed + b`` in per-image mode).
        device: where to run (the encoder is moved there); default the encoder's device.
        out_dir: folder for the PNG figures (``<name>_<method>[_cross-image].png``).
        raw_pixel_baseline: add the row of K-Means on the raw RGB pixels of the image
            downsampled to the smallest feature map (Chen et al.'s baseline).
        names: one name per image (figure names and file names); default image0, image1, ...
        normalize: standardise the inputs with the ImageNet mean and std first (right for
            torchvision's supervised weights; pyclr-trained encoders and converted SimCLR
            checkpoints saw [0, 1] images: False).
        n_init, backend: K-Means restarts and backend (see :func:`pyclr.cluster.kmeans`).
    """
    methods = _check_methods(method)
    ks = _check_ks(ks)
    images = _check_images(images)
    names = _check_names(names, len(images))  # bad options fail before the forward pass
    # per image, image b is seeded with seed + b: a seed near the limit failed after the
    # clustering, naming seed + b (the cross-image clustering takes seed alone)
    seed = check_int("seed", seed, 0, SEED_LIMIT - (1 if check_bool("cross_image", cross_image) else len(images)))
    check_choice("upsample", upsample, UPSAMPLE_MODES)
    # a truthy string such as "no" would have meant yes
    cross_image, normalize = check_bool("cross_image", cross_image), check_bool("normalize", normalize)
    raw_pixel_baseline = check_bool("raw_pixel_baseline", raw_pixel_baseline)
    features = extract_features(encoder, images, taps, device=device, normalize=normalize)
    maps = {}
    for tap, feats in features.items():
        for m in methods:
            row = tap if len(methods) == 1 else f"{tap} {m}"
            maps[row] = _cluster(feats, ks, m, cross_image, seed, n_init, backend)
    if raw_pixel_baseline:
        smallest = min((f.shape[1:3] for f in features.values()), key=lambda s: s[0] * s[1])
        maps[RAW_PIXELS] = {k: _raw_pixels(images, tuple(smallest), k, cross_image, seed, n_init, backend)
                            for k in ks}
    suffix = "_" + "+".join(methods) + ("_cross-image" if cross_image else "")
    return draw_figures(images, maps, cross_image=cross_image, upsample=upsample, names=names,
                        out_dir=out_dir, suffix=suffix)


def extract_features(encoder, images: torch.Tensor, taps: Sequence[str], device=None,
                     normalize: bool = True) -> Dict[str, torch.Tensor]:
    """``{tap: (B, h, w, C)}`` l2-normalised per-pixel features (:func:`pixel_features`) from
    one forward pass in eval mode without gradients, in float32."""
    if not callable(getattr(encoder, "features", None)) or not isinstance(encoder, torch.nn.Module):
        raise TypeError(f"encoder: expected a pyclr encoder with features(x, taps) (pyclr.models), "
                        f"got {type(encoder).__name__}")
    taps = [taps] if isinstance(taps, str) else list(taps)
    device = _device(encoder, device)
    x = _check_images(images).to(device)
    if normalize:
        x = (x - x.new_tensor(IMAGENET_MEAN)[:, None, None]) / x.new_tensor(IMAGENET_STD)[:, None, None]
    if getattr(encoder, "in_channels", 3) == 1:  # an encoder trained on grey images (MNIST)
        x = x.mean(1, keepdim=True)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            maps = encoder.features(x, taps)
    finally:
        encoder.train(was_training)
    return {tap: pixel_features(m.float()) for tap, m in maps.items()}


def draw_figures(images, label_maps: Mapping[str, Mapping[int, torch.Tensor]], cross_image: bool = False,
                 upsample: str = "nearest", names: Optional[Sequence[str]] = None,
                 out_dir: Optional[str] = None, suffix: str = "") -> MaskResult:
    """Figures from label maps at any resolution: upsampled to the images, coloured
    consistently across k (over the whole batch when ``cross_image``: a cluster has one colour
    in every image), overlaid on the grey-scale images.

    Args:
        images: ``(B, 3, H, W)`` float in [0, 1] or uint8.
        label_maps: ``{row: {k: (B, h, w) labels}}``, every row with the same ks (columns).
        names, out_dir: as :func:`render_masks`; files are ``<name><suffix>.png``.
    """
    images = _check_images(images)
    names = _check_names(names, len(images))
    ks = _check_label_maps(label_maps, len(images))
    cross_image = check_bool("cross_image", cross_image)
    check_choice("upsample", upsample, UPSAMPLE_MODES)
    size = tuple(images.shape[-2:])
    labels = {row: {k: upsample_labels(m, size, upsample).cpu() for k, m in by_k.items()}
              for row, by_k in label_maps.items()}
    colours = {row: _row_colours(by_k, ks, cross_image) for row, by_k in labels.items()}
    rgb = [to_rgb_uint8(im) for im in images]
    result = MaskResult(labels, colours)
    col_labels = [f"k = {k}" for k in ks]
    for b, name in enumerate(names):
        tiles = [[overlay(rgb[b], labels[row][k][b], colours[row][k][b]) for k in ks] for row in labels]
        result.figures[name] = figure_grid(tiles, list(labels), col_labels)
    if cross_image:
        for row in labels:
            tiles = [[overlay(rgb[b], labels[row][k][b], colours[row][k][b]) for k in ks]
                     for b in range(len(images))]
            result.figures[f"batch {row}"] = figure_grid(tiles, names, col_labels)
    if out_dir is not None:
        result.paths = _write(result.figures, out_dir, suffix)
    return result


def load_images(paths: Sequence[str], size: int = 448) -> torch.Tensor:
    """Image files read with OpenCV as ``(B, 3, size, size)`` float RGB in [0, 1]: each
    centre-cropped to a square (no distortion) and resized (:func:`square_image`). 448 gives
    14x14 block4 maps on a ResNet-50, as in the [Re] paper's figures."""
    cv2 = import_cv2()
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise ValueError("paths: expected at least one image file, got none")
    side = _check_side(size)
    images = []
    for path in paths:
        try:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR) if os.path.isfile(path) else None
        except cv2.error as exc:  # e.g. a header declaring more pixels than OpenCV's limit
            raise ValueError(f"image: cannot read {str(path)!r} ({str(exc).strip().splitlines()[-1]})") from exc
        if bgr is None:
            raise ValueError(f"image: cannot read {str(path)!r} (missing, unreadable or not an image file)")
        rgb = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float() / 255
        images.append(square_image(rgb, side))
    return torch.stack(images)


def image_names(paths: Sequence[str]) -> List[str]:
    """Distinct figure names from file names: the stems, numbered (``stem-i``, ``i`` the
    file's position, or the next free number) where two files share one."""
    if isinstance(paths, (str, bytes)) or not isinstance(paths, Sequence):
        raise TypeError(f"paths: expected a sequence of file paths, got {describe(paths)}")
    stems = [Path(p).stem or "image" for p in paths]
    taken = {s for s in stems if stems.count(s) == 1}  # kept as they are
    names = []
    for i, stem in enumerate(stems):
        name = stem
        if stems.count(stem) > 1:
            j = i
            while f"{stem}-{j}" in taken:  # x.png twice beside x-1.png
                j += 1
            name = f"{stem}-{j}"
            taken.add(name)
        names.append(name)
    return names


def square_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """A ``(3, H, W)`` image (float in [0, 1], or uint8) centre-cropped to a square and resized
    to ``size``² with antialiased bilinear interpolation (area-like when shrinking), clamped to
    [0, 1]; float16 and bfloat16 images come back as float32."""
    side = _check_side(size)
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3 or image.numel() == 0:
        raise ValueError(f"image: expected a (3, H, W) tensor, got {describe(image)}")
    if image.dtype == torch.uint8:  # clamping 0..255 to [0, 1] after resizing made it binary
        image = image.float() / 255
    elif not image.is_floating_point():
        raise TypeError(f"image: expected uint8 or floating point, got {image.dtype}")
    elif image.dtype in (torch.float16, torch.bfloat16):  # antialiased resizing takes no half on the CPU
        image = image.float()
    if not bool(torch.isfinite(image).all()):  # NaN passed the clamp; inf became NaN in the resize
        raise ValueError("image: expected finite values, got NaN or inf")
    h, w = image.shape[-2:]
    crop = min(h, w)
    top, left = (h - crop) // 2, (w - crop) // 2
    square = image[:, top:top + crop, left:left + crop]
    if crop == side:  # clamped too, as the docstring says (only a resized image was)
        return square.clamp(0, 1)
    return F.interpolate(square[None], size=(side, side), mode="bilinear", align_corners=False,
                         antialias=True)[0].clamp_(0, 1)


def default_encoder(checkpoint: Optional[str] = None, seed: int = 0):
    """The encoder for ``pyclr masks``.

    ``checkpoint`` may be a pyclr run folder (``pyclr train --out``: its ``config.json`` names
    the encoder, ``checkpoint.pt`` holds the weights) or that ``checkpoint.pt``, or a ResNet
    state dict in torchvision's layout (a torchvision model's or a converted SimCLR
    checkpoint's; depth, width and stem are read off the tensors). None gives a randomly
    initialised ResNet-50 (seeded, without touching the global random state), and says so.
    """
    if checkpoint is None:
        from ..models import resnet50

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = resnet50()
        print(f"pyclr masks: no checkpoint given; using a randomly initialised ResNet-50 (seed {seed})",
              file=sys.stderr)
        return encoder
    if not os.path.exists(checkpoint):
        raise ValueError(f"checkpoint: {checkpoint!r} does not exist")
    folder = find_run_folder(checkpoint)
    if folder is not None:
        return load_run_encoder(folder)[0]
    return _encoder_from_state_dict(read_checkpoint(checkpoint), checkpoint)


def find_run_folder(path: str) -> Optional[str]:
    """The pyclr run folder that ``path`` is (or whose ``checkpoint.pt`` it is), else None."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or os.path.basename(path) == RUN_CHECKPOINT:
        if os.path.isfile(os.path.join(folder, RUN_CONFIG)):
            return folder
        if os.path.isdir(path):
            raise ValueError(f"checkpoint: the folder {path!r} has no {RUN_CONFIG} (is it a pyclr run folder?)")
    return None


# --- checks ------------------------------------------------------------------------------------

def _check_methods(method) -> List[str]:
    methods = [method] if isinstance(method, str) else list(method)
    if not methods:
        raise ValueError(f"method: expected one or more of {', '.join(METHODS)}, got none")
    for m in methods:
        check_choice("method", m, METHODS)
    return methods


def _check_ks(ks) -> List[int]:
    if not (is_int(ks) or isinstance(ks, Sequence) and not isinstance(ks, str)):
        raise TypeError(f"ks: expected an int or a list of ints (clusters per column), got {shown(ks)}")
    ks = [check_int("ks", k, 1) for k in ([ks] if is_int(ks) else ks)]
    if not ks or len(set(ks)) != len(ks):
        raise ValueError(f"ks: expected distinct ints >= 1 (clusters per column), got {ks!r}")
    return ks


# The largest image side: a 448 image already needs ~1 GB for a ResNet-50's taps; 4096 about
# 20 GB on the CPU (the audit measured 1.6 GB at 2048 for block4 alone).
MAX_SIDE = 4096


def _check_side(size) -> int:
    pair = (size, size) if is_int(size) else size
    if isinstance(pair, (tuple, list)) and all(is_int(s) for s in pair) and max(pair) > MAX_SIDE:
        raise ValueError(f"size: expected at most {MAX_SIDE} pixels a side, got {size}")  # before check_size's 8192
    height, width = check_size("size", size)
    if height != width:
        raise ValueError(f"size: expected one side (square images), got {size!r}")
    if height > MAX_SIDE:
        raise ValueError(f"size: expected at most {MAX_SIDE} pixels a side, got {height}")
    return height


def _check_images(images) -> torch.Tensor:
    if isinstance(images, (list, tuple)) and images and all(isinstance(i, torch.Tensor) for i in images):
        shapes = {tuple(i.shape) for i in images}
        if len(shapes) != 1:
            raise ValueError(f"images: expected images of one size, got shapes {sorted(shapes)}")
        images = torch.stack(list(images))
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3 or images.numel() == 0:
        raise ValueError(f"images: expected a (B, 3, H, W) tensor, got {describe(images)}")
    if images.dtype == torch.uint8:
        return images.float() / 255
    if not images.is_floating_point():
        raise TypeError(f"images: expected uint8 or floating point, got {images.dtype}")
    low, high = float(images.min()), float(images.max())
    if not (low >= 0 and high <= 1):
        raise ValueError(f"images: expected values in [0, 1] (normalisation happens inside), "
                         f"got {low:.3g}..{high:.3g}")
    return images.float()


def _check_names(names, count: int) -> List[str]:
    if names is None:
        return [f"image{b}" for b in range(count)]
    names = None if isinstance(names, str) else list(names)
    if names is None or len(names) != count or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"names: expected {count} non-empty strings (one per image), got {names!r}")
    if len(set(names)) != count:
        raise ValueError(f"names: expected distinct names, got {names!r}")
    return names


def _check_label_maps(label_maps, batch: int) -> List[int]:
    """The columns (ks) shared by every row; each map must hold one label map per image."""
    if not isinstance(label_maps, Mapping) or not label_maps:
        raise ValueError(f"label_maps: expected {{row: {{k: (B, h, w) labels}}}}, got {describe(label_maps)}")
    ks = None
    for row, by_k in label_maps.items():
        if not isinstance(by_k, Mapping) or not by_k:
            raise ValueError(f"label_maps[{row!r}]: expected {{k: (B, h, w) labels}}, got {describe(by_k)}")
        if ks is None:
            ks = list(by_k)
        elif list(by_k) != ks:
            raise ValueError(f"label_maps[{row!r}]: expected the columns {ks} of the first row, got {list(by_k)}")
        for k, maps in by_k.items():
            maps = int_tensor(f"label_maps[{row!r}][{k!r}]", maps, (3,), below=MAX_CLUSTERS)
            if maps.shape[0] != batch:
                raise ValueError(f"label_maps[{row!r}][{k!r}]: expected {batch} label maps (one per image), "
                                 f"got {maps.shape[0]}")
    return ks


# --- steps -------------------------------------------------------------------------------------

def _device(encoder, device) -> torch.device:
    if device is not None:
        device = check_device(device)
        encoder.to(device)
        return device
    parameter = next(encoder.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _cluster(features: torch.Tensor, ks: List[int], method: str, cross_image: bool, seed: int, n_init: int,
             backend: str) -> Dict[int, torch.Tensor]:
    """``{k: (B, h, w) labels}`` of the features clustered with each k."""
    if method == "kmeans":
        mode = "cross_image" if cross_image else "per_image"
        return {k: kmeans(features, k, mode=mode, n_init=n_init, seed=seed, backend=backend).labels for k in ks}
    # ward and bisecting cluster each image of a (B, h, w, C) batch; all pixels as one set of points
    points = features.reshape(-1, features.shape[-1]) if cross_image else features
    if method == "ward":  # one merge tree per image, cut at every k
        return {k: r.labels.reshape(features.shape[:-1]) for k, r in ward(points, ks).items()}
    return {k: bisecting(points, k, seed=seed).labels.reshape(features.shape[:-1]) for k in ks}


def _raw_pixels(images: torch.Tensor, size, k: int, cross_image: bool, seed: int, n_init: int,
                backend: str) -> torch.Tensor:
    options = dict(n_init=n_init, backend=backend)
    if not cross_image:
        return torch.stack([raw_pixel_kmeans(im, size, k, seed=seed + b, **options).labels
                            for b, im in enumerate(images)])
    # one problem for the batch: the same area downsampling as raw_pixel_kmeans
    small = F.interpolate(images, size=size, mode="area").permute(0, 2, 3, 1).contiguous()
    return kmeans(small, k, mode="cross_image", seed=seed, **options).labels


def _row_colours(by_k: Mapping[int, torch.Tensor], ks: List[int], cross_image: bool) -> Dict[int, torch.Tensor]:
    """``{k: (B, k) palette indices}`` for one row; per image, or shared by the batch."""
    counts = [max(k, int(by_k[k].max()) + 1) if is_int(k) else None for k in ks]
    if cross_image:
        shared = consistent_colours([by_k[k] for k in ks], counts)
        return {k: c.repeat(len(by_k[k]), 1) for k, c in zip(ks, shared)}
    per_image = [consistent_colours([by_k[k][b] for k in ks], counts) for b in range(len(by_k[ks[0]]))]
    return {k: torch.stack([colours[i] for colours in per_image]) for i, k in enumerate(ks)}


def _write(figures: Dict[str, np.ndarray], out_dir: str, suffix: str) -> Dict[str, str]:
    from .figure import write_png

    used, paths = set(), {}
    for name, figure in figures.items():
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name + suffix).strip("-") or "figure"
        while stem in used:  # two names that differ only in odd characters
            stem += "_"
        used.add(stem)
        paths[name] = write_png(os.path.join(out_dir, stem + ".png"), figure)
    return paths


# --- checkpoints -------------------------------------------------------------------------------

def _encoder_from_state_dict(state, path: str):
    """A ResNet shaped after a torchvision-layout state dict, loaded with it."""
    from ..models import ResNet

    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"checkpoint: expected a state dict in {path!r}, got {type(state).__name__}")
    if "encoder" in state and isinstance(state["encoder"], Mapping):
        raise ValueError(f"checkpoint: {path!r} is a pyclr training checkpoint; pass its run folder "
                         f"(with {RUN_CONFIG}) instead")
    if not all(isinstance(k, str) for k in state):
        raise ValueError(f"checkpoint: expected a state dict (parameter names to tensors) in {path!r}, "
                         f"got keys of type {sorted({type(k).__name__ for k in state})}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    conv1 = state.get("conv1.weight")
    if not isinstance(conv1, torch.Tensor) or conv1.dim() != 4:
        raise ValueError(f"checkpoint: expected a ResNet state dict in torchvision's layout (conv1.weight, "
                         f"layer1.0..., fc...) in {path!r}, got keys {sorted(state)[:5]}")
    blocks = len({k.split(".")[1] for k in state if k.startswith("layer3.")})
    arch = "resnet50" if "layer1.0.conv3.weight" in state else "resnet34" if blocks == 6 else "resnet18"
    encoder = ResNet(arch, width=max(conv1.shape[0] // 64, 1), cifar_stem=conv1.shape[-1] == 3,
                     in_channels=conv1.shape[1])
    encoder.load_torchvision_state_dict(state)
    return encoder
