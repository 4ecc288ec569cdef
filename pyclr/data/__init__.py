"""Data: the papers' controlled datasets, real-data loaders (offline first) and batched
augmentations (``pyclr.data.augment``)."""
from .augment import (POLICIES, AugmentParams, SimCLRAugment, crop_without_resize, random_bits_crop,
                      resized_crop, sample_crop_boxes)
from .digits import DigitsOnImages, MultiDigit, RandomBits, TwoDigitSizes, multidigit_eval
from .hierarchy import Hierarchy
from .memory import InMemory
from .mnist import MNIST, MnistArrays, load_mnist, read_idx
from .real import CIFAR10, ImageFolder, NaturalImages, natural_images
from .registry import DATASETS, make_dataset
from .sprites import Sprites, hsluv_to_rgb, husl_palette, sprites_decoding_split

__all__ = [
    "SimCLRAugment", "AugmentParams", "POLICIES", "crop_without_resize", "random_bits_crop",
    "resized_crop", "sample_crop_boxes",
    "CIFAR10", "DATASETS", "DigitsOnImages", "Hierarchy", "ImageFolder", "InMemory", "MNIST", "MnistArrays",
    "MultiDigit", "NaturalImages", "RandomBits", "Sprites", "TwoDigitSizes", "hsluv_to_rgb",
    "husl_palette", "load_mnist", "make_dataset", "multidigit_eval", "natural_images",
    "read_idx", "sprites_decoding_split",
]
