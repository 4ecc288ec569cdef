"""The registry, and what every synthetic dataset promises: (C, H, W) float images in [0, 1],
dict labels, items a function of (seed, index), safe to read from DataLoader workers."""
import socket

import pytest
import torch
from torch.utils.data import DataLoader

from pyclr.data import DATASETS, Hierarchy, MultiDigit, Sprites, TwoDigitSizes, make_dataset

from .helpers import needs_embedded_digits, no_network  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_network")

SYNTHETIC = {
    "multidigit": dict(n_digits=3, placement="grid", size=8),
    "multidigit_eval": dict(size=8),
    "two_digit_sizes": dict(second_size=40, size=8),
    "random_bits": dict(bits=4),
    "hierarchy": {},
    "sprites": {},
    "mnist": {},
}
FROM_MNIST = {"multidigit", "multidigit_eval", "two_digit_sizes", "random_bits", "mnist"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=needs_embedded_digits) if n in FROM_MNIST else n
                                  for n in SYNTHETIC])
def test_make_dataset_items(name):
    data = make_dataset(name, **SYNTHETIC[name])
    assert len(data) > 0
    for i in (0, len(data) - 1):
        image, labels = data[i]
        assert isinstance(image, torch.Tensor) and image.dim() == 3 and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1
        assert isinstance(labels, dict) and labels
        assert all(isinstance(v, (int, torch.Tensor)) for v in labels.values())


@needs_embedded_digits
def test_make_dataset_names_and_errors():
    assert isinstance(make_dataset("MultiDigit", size=2), MultiDigit)
    assert isinstance(make_dataset(" two-digit-sizes", size=2), TwoDigitSizes)
    assert set(SYNTHETIC) | {"digits_on_images", "cifar10", "image_folder", "natural_images"} == set(DATASETS)
    with pytest.raises(ValueError, match=r"name: unknown dataset 'imagenet'; known datasets: mnist, multidigit"):
        make_dataset("imagenet")
    with pytest.raises(TypeError, match="name: expected a dataset name"):
        make_dataset(Sprites)
    with pytest.raises(ValueError, match=r"dataset 'multidigit': unknown options \['n_digit'\]; it takes n_digits,"):
        make_dataset("multidigit", n_digit=2)


@pytest.mark.parametrize("make", [
    pytest.param(lambda: MultiDigit(4, "random", size=12, seed=9), marks=needs_embedded_digits),
    lambda: Hierarchy(levels=2, branching=6)])
def test_workers_read_the_same_items(make):
    data = make()
    serial = list(DataLoader(data, batch_size=4))
    parallel = list(DataLoader(data, batch_size=4, num_workers=2))
    for (x1, y1), (x2, y2) in zip(serial, parallel):
        assert torch.equal(x1, x2)
        assert y1.keys() == y2.keys() and all(torch.equal(y1[k], y2[k]) for k in y1)


def test_the_network_guard_works():
    with pytest.raises(AssertionError, match="touched the network"):
        socket.create_connection(("localhost", 9))


def test_the_network_guard_refuses_plain_sockets():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        with pytest.raises(AssertionError, match="touched the network"):
            s.connect(("127.0.0.1", 9))
