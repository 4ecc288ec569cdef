"""Real images, offline first: CIFAR-10 from its python-pickle folder, any folder of images,
and the natural photographs that scikit-image and scikit-learn ship. The network is used only
with ``download=True``."""
from __future__ import annotations

import functools
import logging
import os
import pickle
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import as_sequence, check_bool, check_side, check_size
from ._util import check_index, optional_import, resize

log = logging.getLogger(__name__)

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def _as_path(root, name: str = "root") -> Path:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a path, got {type(root).__name__}")
    return Path(root).expanduser()


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch: images uint8 (n, 3, 32, 32), labels int64 (n,). Pickle runs code
    from the file, so only read CIFAR-10 folders you trust (as with torchvision)."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        raw, raw_labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from exc
    # values the casts would change (int64 data wrapped to uint8, 0.5 labels truncated to 0)
    if raw.dtype != np.uint8 and not (raw.dtype.kind in "iu" and (raw.size == 0 or (raw.min() >= 0 and raw.max() <= 255))):
        raise ValueError(f"{path}: expected data bytes 0..255, got {raw.dtype}")
    if raw_labels.size and raw_labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: expected integer labels, got {raw_labels.dtype}")
    data, labels = raw.astype(np.uint8), raw_labels.astype(np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(f"{path}: expected data (n, 3072) and n labels, got data "
                         f"{data.shape} and {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"{path}: expected labels 0..9, got {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32), labels


class CIFAR10(Dataset):
    """CIFAR-10 from the python-pickle folder ``cifar-10-batches-py`` (``root`` is that folder
    or its parent): ``(image (3, 32, 32) float in [0, 1], {"label": int})``. The train split is
    ``data_batch_1..5``, the test split ``test_batch``. ``download=True`` fetches the folder
    into ``root`` with torchvision when it is missing."""

    def __init__(self, root, train: bool = True, download: bool = False):
        train, download = check_bool("train", train), check_bool("download", download)
        root = _as_path(root)
        names = [f"data_batch_{k}" for k in range(1, 6)] if train else ["test_batch"]
        folder = self._folder(root, names)
        if folder is None and download:
            tv = optional_import("torchvision.datasets", "CIFAR10(download=True)", "torchvision")
            log.info("downloading CIFAR-10 into %s", root)
            try:
                tv.CIFAR10(str(root), train=train, download=True)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:  # offline: it named neither the dataset nor the fix
                raise OSError(f"root: downloading CIFAR-10 into {root} failed ({exc}); without a network, "
                              f"put {CIFAR10_FOLDER} (the python version from "
                              "https://www.cs.toronto.edu/~kriz/cifar.html) in it") from exc
            folder = self._folder(root, names)
        if folder is None:
            raise FileNotFoundError(
                f"root: no CIFAR-10 batches ({', '.join(names)}) in {root} or {root / CIFAR10_FOLDER}; "
                "pass download=True to fetch them")
        batches = [_read_cifar_batch(folder / n) for n in names]
        self.images = torch.from_numpy(np.concatenate([b[0] for b in batches]))
        self.labels = torch.from_numpy(np.concatenate([b[1] for b in batches]))
        self.classes = self._classes(folder)
        self.root = folder

    @staticmethod
    def _folder(root: Path, names) -> Path | None:
        for folder in (root, root / CIFAR10_FOLDER):
            if all((folder / n).is_file() for n in names):
                return folder
        return None

    @staticmethod
    def _classes(folder: Path) -> tuple[str, ...]:
        # batches.meta names the classes; without it, the standard names.
        meta = folder / "batches.meta"
        if not meta.is_file():
            return CIFAR10_CLASSES
        try:
            with open(meta, "rb") as f:
                names = pickle.load(f, encoding="bytes")[b"label_names"]
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
        except Exception as exc:
            raise ValueError(f"{meta}: not a CIFAR-10 batches.meta ({type(exc).__name__}: {exc})") from exc
        if len(names) != len(CIFAR10_CLASSES):  # labels go to 9: a short list failed at a lookup
            raise ValueError(f"{meta}: expected {len(CIFAR10_CLASSES)} label names, got {len(names)}")
        return names

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        i = check_index(index, len(self))
        return self.images[i].float() / 255.0, {"label": int(self.labels[i])}


def _check_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    return check_size("size", size)


def _open_image(path: Path) -> torch.Tensor:
    """``path`` as a (3, H, W) float image in [0, 1]. Single-channel 16-bit images (PIL mode
    I;16*) are read at their depth, /65535: PIL's convert("RGB") clips them to 255 (a white
    image). 32-bit integer and float ones (modes I and F) have no depth of their own: they are
    read in PIL's 0..255 convention, and refused with values outside it, which it clipped."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode.startswith("I") or im.mode == "F":
                return _deep_grey(path, im.mode, np.asarray(im))
            rgb = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: cannot read image ({exc})") from exc
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0


def _deep_grey(path: Path, mode: str, values: np.ndarray) -> torch.Tensor:
    """A single-channel image of PIL mode I;16* (0..65535), I or F (0..255) as (3, H, W)
    float32 in [0, 1]; values outside the mode's range are refused."""
    values = values.astype(np.float64)
    top = 65535.0 if mode.startswith("I;16") else 255.0
    if values.ndim != 2 or not np.isfinite(values).all() or values.min() < 0 or values.max() > top:
        raise ValueError(f"{path}: a {mode} image with values outside 0..{top:g} (or not one channel); "
                         "convert it to 8 or 16 bits first")
    grey = torch.from_numpy(values / top).float()
    return grey.expand(3, *grey.shape).clone()


class ImageFolder(Dataset):
    """Any folder of images (read with PIL as RGB; single-channel 16-bit images at their depth):
    ``(image (3, H, W) float in [0, 1], {"label": int})``.

    As torchvision's ``ImageFolder``, each immediate subfolder of ``root`` (but hidden ones,
    named ``.*``) is a class (sorted names in ``classes``), searched recursively; images lying
    directly in ``root`` get label -1. A class folder without images is an error, as in
    torchvision: skipping it would shift the labels after it, and a split lacking a class would
    then number its classes unlike the other splits (where no subfolder holds images, ``root``
    is a folder of unlabelled images, and its subfolders are ignored). ``size`` (an int or
    (height, width)) resizes every image so that batches stack. Extensions:
    ``IMAGE_EXTENSIONS`` (any case). ``paths`` lists the files in item order.
    """

    def __init__(self, root, size=None):
        root = _as_path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"root: {root} is not a folder")
        self.size = _check_size(size)
        folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        found = {name: _images_in(root / name) for name in folders}
        # no subfolder with images: a folder of unlabelled images (its other subfolders ignored)
        self.classes = folders if any(found.values()) else []
        items = [(p, -1) for p in _images_in(root, recursive=False)]
        for label, name in enumerate(self.classes):
            items += [(p, label) for p in found[name]]
        empty = [name for name in self.classes if not found[name]]
        if empty:
            raise FileNotFoundError(
                f"root: the class folders {', '.join(empty)} of {root} hold no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "every subfolder is a class, numbered in sorted order, so that a class has the same label in "
                "every split: add its images or remove the folder")
        if not items:
            raise FileNotFoundError(f"root: no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
        self.paths = [p for p, _ in items]
        self.labels = torch.tensor([label for _, label in items])
        self.root = root

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        i = check_index(index, len(self))
        image = _open_image(self.paths[i])
        if self.size is not None:
            image = resize(image, *self.size)
        return image, {"label": int(self.labels[i])}


def _images_in(folder: Path, recursive: bool = True) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


# The photographs each library ships inside its package (read from disk, never downloaded).
SKIMAGE_IMAGES = ("astronaut", "chelsea", "coffee", "rocket")
SKLEARN_IMAGES = ("china", "flower")


# Each reader imports its library outside the cache, so a missing library is noticed on every
# call, and caches the decoded arrays (decoding the JPEGs takes a second).
def _skimage_images() -> dict[str, np.ndarray]:
    import skimage.data

    return _skimage_arrays(skimage.data)


@functools.lru_cache(maxsize=1)
def _skimage_arrays(module) -> dict[str, np.ndarray]:
    return {name: getattr(module, name)() for name in SKIMAGE_IMAGES}


def _sklearn_images() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_sample_images

    return _sklearn_arrays(load_sample_images)


@functools.lru_cache(maxsize=1)
def _sklearn_arrays(load_sample_images) -> dict[str, np.ndarray]:
    found = load_sample_images()
    return {Path(f).stem: im for f, im in zip(found.filenames, found.images)
            if Path(f).stem in SKLEARN_IMAGES}


def natural_images(names=None) -> dict[str, torch.Tensor]:
    """The natural photographs shipped by scikit-image (astronaut, chelsea, coffee, rocket)
    and scikit-learn (china, flower) as ``{name: (3, H, W) float in [0, 1]}``, in that order;
    ``names`` picks some. A missing library drops its images with a warning; with neither,
    an ImportError says what to install. Never touches the network."""
    images, missing = {}, []
    for library, loader in (("scikit-image", _skimage_images), ("scikit-learn", _sklearn_images)):
        try:
            images.update(loader())
        except ImportError as exc:
            missing.append(f"{library} ({exc})")
    if not images:
        raise ImportError("natural_images: needs scikit-image or scikit-learn (pip install "
                          f"scikit-image scikit-learn): {'; '.join(missing)}")
    if missing:
        warnings.warn(f"natural_images: without {', '.join(missing)}, only "
                      f"{', '.join(images)} are available", stacklevel=2)
    if names is not None:
        listed = as_sequence(names)
        if listed is None or not all(isinstance(n, str) for n in listed) or any(n not in images for n in listed) \
                or not listed or len(set(listed)) != len(listed):  # [] gave an empty dataset, repeats collapsed
            raise ValueError(f"names: expected a non-empty list of distinct names from {', '.join(images)}, "
                             f"got {names!r}")
        images = {n: images[n] for n in listed}
    return {n: torch.from_numpy(np.array(im[..., :3])).permute(2, 0, 1).float() / 255.0
            for n, im in images.items()}


class NaturalImages(Dataset):
    """:func:`natural_images` as a dataset: each photograph centre-cropped to a square and
    resized to ``size``² (None keeps it whole); labels ``{"label": k}`` with ``names[k]``."""

    def __init__(self, size: int | None = 224, names=None):
        self.size = None if size is None else check_side("size", size)
        found = natural_images(names)
        self.names = list(found)
        self.images = [self._square(im) for im in found.values()]

    def _square(self, image: torch.Tensor) -> torch.Tensor:
        if self.size is None:
            return image
        h, w = image.shape[-2:]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return resize(image[:, top:top + side, left:left + side], self.size, self.size)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        i = check_index(index, len(self))
        return self.images[i], {"label": i}
