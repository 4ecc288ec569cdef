"""``make_dataset(name, **kwargs)``: every dataset of ``pyclr.data`` by name."""
from __future__ import annotations

from .._checks import check_options
from .digits import DigitsOnImages, MultiDigit, RandomBits, TwoDigitSizes, multidigit_eval
from .hierarchy import Hierarchy
from .mnist import MNIST
from .real import CIFAR10, ImageFolder, NaturalImages
from .sprites import Sprites

DATASETS = {
    "mnist": MNIST,
    "multidigit": MultiDigit,
    "multidigit_eval": multidigit_eval,
    "two_digit_sizes": TwoDigitSizes,
    "random_bits": RandomBits,
    "digits_on_images": DigitsOnImages,
    "hierarchy": Hierarchy,
    "sprites": Sprites,
    "cifar10": CIFAR10,
    "image_folder": ImageFolder,
    "natural_images": NaturalImages,
}


def make_dataset(name: str, **kwargs):
    """The dataset ``name`` (one of ``DATASETS``; case and ``-`` vs ``_`` do not matter) built
    with ``kwargs``."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected a dataset name (str), got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise ValueError(f"name: unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    check_options(f"dataset {key!r}", DATASETS[key], kwargs)
    return DATASETS[key](**kwargs)
