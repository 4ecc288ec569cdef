"""Shared helpers of the datasets: argument checks, per-item generators, resizing, lazy imports."""
from __future__ import annotations

import importlib
import operator
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_int, widen_unsigned


# Class ids index per-class rows (a probe's weights, per-class scores): ids above both this and
# the number of rows are refused rather than allocated for.
MAX_SPARSE_CLASSES = 1 << 16


def check_class_ids(name: str, largest: int, rows: int) -> None:
    """Refuses class ids that would size a per-class table far beyond the data."""
    if largest >= max(rows, MAX_SPARSE_CLASSES):
        raise ValueError(f"{name}: expected class ids 0..C-1, got ids up to {largest} for {rows} rows; "
                         "map them to 0..C-1 first")


def label_tensor(name: str, labels, shape: tuple) -> torch.Tensor:
    """``labels`` (a tensor, numpy array or list) as a tensor whose dtype tells the caller's
    check whether they are integers: wide unsigned integers become int64 (widen_unsigned); ValueError
    naming ``name`` and the expected ``shape`` where torch cannot read them as numbers."""
    labels = widen_unsigned(name, labels)
    try:
        return torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name}: expected integer labels of shape {tuple(shape)}, got "
                         f"{type(labels).__name__} that is not a tensor of numbers") from None


def check_seed(seed) -> int:
    # numpy's SeedSequence takes non-negative entropy only.
    # torch generators take seeds below 2**64; 2**64 raised 'Overflow when unpacking long long'
    return check_int("seed", seed, 0, 2 ** 63 - 1)


def check_index(index, length: int) -> int:
    """A dataset index in ``0..length-1``; IndexError past the end so plain iteration stops."""
    if isinstance(index, (bool, np.bool_)):
        raise TypeError(f"index: expected an int, got {index!r}")  # operator.index(True) is 1
    try:
        i = operator.index(index)
    except TypeError:
        raise TypeError(f"index: expected an int, got {type(index).__name__}") from None
    if not 0 <= i < length:
        raise IndexError(f"index: expected 0..{length - 1}, got {i}")
    return i


def salt(name: str) -> int:
    """A fixed integer per dataset kind, so equal seeds of two kinds give unrelated streams."""
    return zlib.crc32(name.encode())


def item_rng(seed: int, index: int, kind: str) -> np.random.Generator:
    """The generator of one item: a pure function of (seed, index, dataset kind), so items are
    reproducible in any order and in any worker process without shared state. PCG64 by name,
    not default_rng's choice: the items' values must not follow a change of numpy's default."""
    return np.random.Generator(np.random.PCG64([seed, salt(kind), index]))


# numpy's SeedSequence (O'Neill's seed_seq) hash constants and PCG64's 128-bit LCG multiplier:
# part of the stream that numpy guarantees for a fixed seed, so they do not change.
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R, _MASK32 = 0xCA01F9DD, 0x4973F715, 0xFFFFFFFF
_PCG_MULT, _MASK128 = 0x2360ED051FC65DA44385DF649FCCF645, (1 << 128) - 1
_BATCH_FROM = 16  # below this, numpy's own constructor (~11 us an item) is the quicker


def item_rngs(seed: int, indices, kind: str):
    """``item_rng(seed, i, kind)`` for each ``i`` of ``indices``, in order, made cheaply for
    many: the seed hashes of all items are computed at once (numpy's SeedSequence, vectorised)
    and one generator is set to each item's state in turn. The generator yielded is reused:
    draw from it before taking the next. Same states as ``item_rng``, bit for bit."""
    indices = [int(i) for i in indices]
    if len(indices) < _BATCH_FROM or max(indices, default=0) > _MASK32:
        yield from (item_rng(seed, i, kind) for i in indices)
        return
    fixed = np.array(_uint32_words(seed) + _uint32_words(salt(kind)), np.uint32)
    entropy = np.empty((len(indices), len(fixed) + 1), np.uint32)
    entropy[:, :-1] = fixed
    entropy[:, -1] = indices  # an index below 2**32 is one word of entropy
    bit_generator = np.random.PCG64(0)
    generator = np.random.Generator(bit_generator)
    for words in _seed_sequence_state(entropy).tolist():
        bit_generator.state = _pcg64_state(words)
        yield generator


def _uint32_words(n: int) -> list:
    """A non-negative int as SeedSequence reads it: 32-bit words, lowest first (0 is one word)."""
    words = [n & _MASK32]
    while n > _MASK32:
        n >>= 32
        words.append(n & _MASK32)
    return words


def _seed_sequence_state(entropy: np.ndarray) -> np.ndarray:
    """``SeedSequence(row).generate_state(4, np.uint64)`` for each row of ``entropy`` ((n, L)
    uint32 words), all rows at once: numpy's mixing, step by step, on columns (uint32
    arithmetic wraps like the C code's)."""
    hash_const = _INIT_A

    def hashmix(value):
        nonlocal hash_const
        value = value ^ np.uint32(hash_const)
        hash_const = (hash_const * _MULT_A) & _MASK32
        value = value * np.uint32(hash_const)
        return value ^ (value >> np.uint32(16))

    def mix(x, y):
        out = np.uint32(_MIX_L) * x - np.uint32(_MIX_R) * y
        return out ^ (out >> np.uint32(16))

    n, width = entropy.shape
    zeros = np.zeros(n, np.uint32)
    pool = [hashmix(entropy[:, i] if i < width else zeros) for i in range(4)]
    for src in range(4):
        for dst in range(4):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    for src in range(4, width):
        for dst in range(4):
            pool[dst] = mix(pool[dst], hashmix(entropy[:, src]))
    hash_const, words = _INIT_B, []
    for i in range(8):  # 4 uint64 = 8 uint32 words, cycling over the pool
        value = pool[i % 4] ^ np.uint32(hash_const)
        hash_const = (hash_const * _MULT_B) & _MASK32
        value = value * np.uint32(hash_const)
        words.append(value ^ (value >> np.uint32(16)))
    words = np.stack(words, 1).astype(np.uint64)
    return words[:, 0::2] | (words[:, 1::2] << np.uint64(32))  # little-endian pairs


def _pcg64_state(words) -> dict:
    """PCG64's state after seeding with the 4 uint64 ``words`` (numpy's pcg64_set_seed:
    increment from the last two, two LCG steps around adding the first two)."""
    initial = (words[0] << 64) | words[1]
    inc = (((words[2] << 64) | words[3]) << 1 | 1) & _MASK128
    state = (((inc + initial) & _MASK128) * _PCG_MULT + inc) & _MASK128
    return {"bit_generator": "PCG64", "state": {"state": state, "inc": inc}, "has_uint32": 0, "uinteger": 0}


def resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resizes a (C, H, W) float image; antialiased bilinear, so shrinking averages like
    area interpolation and enlarging is plain bilinear."""
    return resize_batch(image[None], height, width)[0]


def resize_batch(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """:func:`resize` of each image of a (B, C, H, W) batch, in one call."""
    if images.shape[-2:] == (height, width):
        return images
    out = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp_(0.0, 1.0)


def as_labels(labels) -> dict:
    """A base dataset's labels as a dict (a bare class index becomes ``{"label": ...}``)."""
    return dict(labels) if isinstance(labels, dict) else {"label": labels}


def optional_import(module: str, purpose: str, package: str | None = None):
    """Imports an optional dependency, or raises an ImportError that says what needs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{purpose} needs the optional package {package or module!r} "
            f"(pip install {package or module}): {exc}"
        ) from exc
