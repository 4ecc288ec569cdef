"""Chen, Luo & Li (2021): MultiDigit canvases and the feature-suppression datasets (digit sizes,
random bits, digits on images). Every item is a pure function of (seed, index)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import check_bool, check_choice, check_int, check_side
from ._util import as_labels, check_index, check_seed, item_rng, item_rngs, resize_batch, salt
from .mnist import MNIST, load_mnist

DIGIT = 28  # MNIST digits are 28×28
MAX_DIGITS = 16  # SPEC: 1…16 digits; per-digit labels are padded to this length with -1
MAX_ITEMS = 2 ** 63 - 1  # len() must fit an index-sized integer


def _pad(values, fill: int = -1, width: int = MAX_DIGITS) -> torch.Tensor:
    values = torch.as_tensor(np.asarray(values), dtype=torch.long)
    out = torch.full((width, *values.shape[1:]), fill, dtype=torch.long)
    out[: len(values)] = values
    return out


def _pad_rows(values, fill: int = -1, width: int = MAX_DIGITS) -> torch.Tensor:
    """:func:`_pad` of each row of ``values`` ((items, n, ...) -> (items, width, ...))."""
    values = torch.as_tensor(np.asarray(values), dtype=torch.long)
    out = torch.full((len(values), width, *values.shape[2:]), fill, dtype=torch.long)
    out[:, : values.shape[1]] = values
    return out


def _base_item(name: str, i: int, item) -> tuple:
    """Item ``i`` of a base dataset (``name``) as its ``(image, labels)`` pair."""
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        got = f"{type(item).__name__} of {len(item)}" if isinstance(item, (tuple, list)) else type(item).__name__
        raise TypeError(f"{name}: item {i} is not an (image, labels) pair (got {got})")
    return item


def _check_base_image(name: str, i: int, image) -> torch.Tensor:
    """Item ``i``'s image of a base dataset (``name``): a (C, H, W) float tensor, not channels-last."""
    if not (isinstance(image, torch.Tensor) and image.dim() == 3 and image.is_floating_point()):
        got = f"{image.dtype} tensor of shape {tuple(image.shape)}" if isinstance(image, torch.Tensor) \
            else type(image).__name__
        raise TypeError(f"{name}: item {i} is not a (C, H, W) float tensor (got {got}; uint8 images: "
                        "image.float() / 255)")
    # (H, W, C) would land across channels; a (C, H, W) image of more than 4 channels and at
    # most 4 pixels a side (Hierarchy(mask_size=4) with 5 levels) is not one
    if image.shape[0] > 4 and image.shape[1] > 4 and image.shape[-1] in (1, 3, 4):
        raise ValueError(f"{name}: item {i} has shape {tuple(image.shape)}, which looks channels-last; "
                         "expected (C, H, W) (image.permute(2, 0, 1))")
    return image


def _check_dataset(name: str, dataset) -> None:
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")) or isinstance(dataset, (str, bytes)):
        raise TypeError(f"{name}: expected a dataset (with __len__ and __getitem__), got {type(dataset).__name__}")


def _check_fits(name: str, side: int, canvas: int) -> None:
    """A side×side digit must fit on the canvas; ``name`` is the argument to blame."""
    if side > canvas:
        raise ValueError(f"{name}: a {side}×{side} digit does not fit on a {canvas}×{canvas} canvas")


class _DigitSource(Dataset):
    """Holds the MNIST digits that canvas datasets draw from."""

    def _load(self, root, train, download) -> None:
        self.images, self.labels, self.source = load_mnist(root, train, download)
        if len(self.labels) == 0:  # numpy's 'high <= 0' at the first item otherwise
            raise ValueError(f"root: the MNIST source ({self.source}) holds no digits")

    def _digits(self, picks, height: int = DIGIT, width: int | None = None) -> torch.Tensor:
        """Digits ``picks`` (B,) of the source as (B, 1, height, width) float images in [0, 1]
        (width: height unless given), resized in one call."""
        images = self.images[torch.from_numpy(np.asarray(picks, dtype=np.int64))][:, None].float() / 255.0
        return resize_batch(images, height, height if width is None else width)

    def _digit(self, k: int, height: int = DIGIT, width: int | None = None) -> torch.Tensor:
        """Digit ``k`` as a (1, height, width) float image in [0, 1]."""
        return self._digits([k], height, width)[0]

    @staticmethod
    def _compose(side: int, slots, corners: np.ndarray) -> torch.Tensor:
        """B ``side``×``side`` canvases ``(B, 1, side, side)``: the digits of slot j (``slots[j]``,
        (B, 1, s, s)) added at top-left ``corners[:, j]`` ((B, n, 2), (y, x)), one slot at a
        time, so overlapping pixels sum in drawing order, then clipped to 1."""
        items = len(corners)
        start = torch.from_numpy((np.arange(items)[:, None] * side + corners[..., 0]) * side + corners[..., 1])
        canvas = torch.zeros(items * side * side)
        for slot, digits in enumerate(slots):  # a slot's pixels are distinct: one addition each
            size = digits.shape[-1]
            patch = (torch.arange(size)[:, None] * side + torch.arange(size)).view(-1)
            canvas.scatter_add_(0, (start[:, slot, None] + patch).view(-1), digits.reshape(-1))
        return canvas.view(items, 1, side, side).clamp_(max=1.0)


class MultiDigit(_DigitSource):
    """``n_digits`` MNIST digits (28×28, or ``digit_size``² with random placement) on a black
    ``canvas``×``canvas`` grey-scale canvas (SPEC §4).

    ``placement="random"``: each digit's top-left corner is uniform over the canvas; overlaps
    add and are clipped to 1. ``placement="grid"``: digits go to distinct cells of the grid of
    28×28 cells (4×4 on 112; a grid that does not fill the canvas is centred).

    Items: ``(image (1, canvas, canvas), labels)`` with labels ``digits`` (classes, (16,) padded
    with -1, in drawing order), ``positions`` ((16, 2) top-left (y, x), -1 padded), ``cells``
    (grid cell ``row * side + col`` or -1), ``mnist_index`` (the digits' indices in the MNIST
    split), ``n_digits``, and with one digit ``label`` (its class: the evaluation set of
    Table 3, see :func:`multidigit_eval`). ``root``, ``train``, ``download``: the digits' source,
    as :func:`~pyclr.data.mnist.load_mnist` (its ``source`` is kept as an attribute).

    ``__getitems__`` (which a DataLoader calls with a batch's indices) composes many items at
    once, several times faster; its items equal ``data[i]``'s bit for bit (views of the batch's
    tensors).
    """

    def __init__(self, n_digits: int = 1, placement: str = "random", canvas: int = 112,
                 size: int = 10_000, seed: int = 0, root=None, train: bool = True,
                 download: bool = False, digit_size: int = DIGIT):
        self.n_digits = check_int("n_digits", n_digits, 1, MAX_DIGITS)
        check_choice("placement", placement, ("random", "grid"))
        self.placement = placement
        self.canvas = check_side("canvas", canvas)
        self.digit_size = check_int("digit_size", digit_size, 1)
        if placement == "grid" and self.digit_size != DIGIT:
            raise ValueError(f"digit_size: the grid's cells are {DIGIT}x{DIGIT}: placement='grid' takes "
                             f"digit_size={DIGIT}, got {self.digit_size}")
        _check_fits("canvas" if self.digit_size == DIGIT else "digit_size", self.digit_size, self.canvas)
        self.size = check_int("size", size, 1, MAX_ITEMS)
        self.seed = check_seed(seed)
        self.side = self.canvas // DIGIT  # grid cells per row
        self.offset = (self.canvas - self.side * DIGIT) // 2
        if placement == "grid" and self.n_digits > self.side ** 2:
            raise ValueError(
                f"n_digits: {self.n_digits} digits do not fit in the {self.side ** 2} distinct "
                f"cells of a {self.side}×{self.side} grid of 28×28 cells on a "
                f"{self.canvas}×{self.canvas} canvas")
        self._load(root, train, download)

    def __len__(self) -> int:
        return self.size

    def _place(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Top-left corners (n, 2) and grid cells (n,) (-1 for random placement)."""
        n = self.n_digits
        if self.placement == "random":
            return rng.integers(0, self.canvas - self.digit_size + 1, (n, 2)), np.full(n, -1)
        cells = rng.choice(self.side ** 2, n, replace=False)
        rows, cols = np.divmod(cells, self.side)
        return self.offset + DIGIT * np.stack([rows, cols], 1), cells

    def _draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One item's digits (n,), top-left corners (n, 2) and grid cells (n,)."""
        picks = rng.integers(0, len(self.labels), self.n_digits)
        return (picks, *self._place(rng))

    def __getitem__(self, index):
        i = check_index(index, self.size)
        picks, corners, cells = self._draw(item_rng(self.seed, i, "MultiDigit"))
        image = torch.zeros(1, self.canvas, self.canvas)
        s = self.digit_size
        for k, (y, x) in zip(picks, corners):
            image[:, y:y + s, x:x + s] += self._digit(k, s)
        classes = self.labels[picks]
        labels = {"digits": _pad(classes), "positions": _pad(corners), "cells": _pad(cells),
                  "mnist_index": _pad(picks), "n_digits": self.n_digits}
        if self.n_digits == 1:
            labels["label"] = int(classes[0])
        return image.clamp_(max=1.0), labels

    def __getitems__(self, indices) -> list:
        """``[self[i] for i in indices]``, composed together (a DataLoader's batch)."""
        indices = [check_index(i, self.size) for i in indices]
        if not indices:
            return []
        draws = [self._draw(rng) for rng in item_rngs(self.seed, indices, "MultiDigit")]
        picks, corners, cells = (np.stack(part) for part in zip(*draws))  # (B, n), (B, n, 2), (B, n)
        classes = self.labels[torch.from_numpy(picks)]
        labels = {"digits": _pad_rows(classes), "positions": _pad_rows(corners),
                  "cells": _pad_rows(cells), "mnist_index": _pad_rows(picks)}
        rows = [dict(zip(labels, values), n_digits=self.n_digits)
                for values in zip(*(t.unbind(0) for t in labels.values()))]
        if self.n_digits == 1:
            for row, label in zip(rows, classes[:, 0].tolist()):
                row["label"] = label
        images = self._compose(self.canvas, [self._digits(column, self.digit_size) for column in picks.T], corners)
        return list(zip(images.unbind(0), rows))


def multidigit_eval(placement: str = "random", canvas: int = 112, size: int = 10_000,
                    seed: int = 0, root=None, train: bool = True,
                    download: bool = False, digit_size: int = DIGIT) -> MultiDigit:
    """The single-digit canvases on which Table 3's linear probe is fitted and tested: a
    :class:`MultiDigit` with one digit, labelled ``label`` by its class. Build one with
    ``train=True`` (probe training) and one with ``train=False`` (probe test). With
    ``digit_size`` s, one s×s digit: Table 4 probes each digit size on its own."""
    return MultiDigit(1, placement, canvas, size, seed, root, train, download, digit_size)


class TwoDigitSizes(_DigitSource):
    """Feature suppression by size (Table 4): two MNIST digits on a ``canvas``×``canvas``
    canvas, the first resized to ``first_size``² (20), the second to ``second_size``²
    (20, 30, …, 80 in the paper; any size up to the canvas).

    Placement: with ``overlap=False`` (default) the pair of top-left corners is uniform over all
    pairs whose boxes do not intersect, so neither digit hides the other (this needs
    ``first_size + second_size <= canvas``); with ``overlap=True`` the corners are independent
    and uniform, overlaps add and are clipped. Labels: ``first_digit``, ``second_digit``,
    ``digits`` ((2,) classes), ``positions`` ((2, 2) top-left (y, x)), ``sizes`` ((2,)),
    ``mnist_index`` ((2,)).

    ``__getitems__`` (which a DataLoader calls with a batch's indices) draws and composes many
    items at once (about 8x faster per item in batches of 256); ``data[i]`` is a batch of one.
    """

    def __init__(self, second_size: int = 20, first_size: int = 20, canvas: int = 112,
                 overlap: bool = False, size: int = 10_000, seed: int = 0, root=None,
                 train: bool = True, download: bool = False):
        self.canvas = check_side("canvas", canvas)
        self.first_size = check_int("first_size", first_size, 1)
        self.second_size = check_int("second_size", second_size, 1)
        _check_fits("first_size", self.first_size, self.canvas)
        _check_fits("second_size", self.second_size, self.canvas)
        overlap = check_bool("overlap", overlap)
        if not overlap and self.first_size + self.second_size > self.canvas:
            raise ValueError(
                f"second_size: digits of {self.first_size} and {self.second_size} pixels cannot "
                f"be placed without overlap on a {self.canvas}-pixel canvas (first_size + "
                "second_size must be <= canvas); pass overlap=True to let them overlap")
        self.overlap = overlap
        self.size = check_int("size", size, 1, MAX_ITEMS)
        self.seed = check_seed(seed)
        if not overlap:
            self._second_weights = self._non_overlap_weights()
            self._second_cdf = self._second_weights.cumsum()  # as numpy's choice normalises it
            self._second_cdf /= self._second_cdf[-1]
        self._load(root, train, download)

    def __len__(self) -> int:
        return self.size

    def _overlap_1d(self, start: int) -> np.ndarray:
        """Which first-digit starts overlap, along one axis, a second digit starting at ``start``."""
        y = np.arange(self.canvas - self.first_size + 1)
        return (y < start + self.second_size) & (y + self.first_size > start)

    def _non_overlap_weights(self) -> np.ndarray:
        """P(second digit's corner): proportional to the number of first-digit corners that do
        not overlap it, which makes the pair uniform over non-overlapping pairs."""
        counts = np.array([self._overlap_1d(s).sum() for s in range(self.canvas - self.second_size + 1)])
        free = len(self._overlap_1d(0)) ** 2 - np.outer(counts, counts)
        return (free / free.sum()).ravel()

    def _corners(self, rng: np.random.Generator) -> np.ndarray:
        """One item's top-left corners ((2, 2): first, second digit; (y, x)). The rule, without
        overlap: the second corner is ``rng.choice(span_second ** 2, p=weights)``, the first
        ``rng.choice(free first corners, row-major)``; drawn here as numpy's ``choice`` draws
        them (one ``random()`` against the weights' normalised cumulative sum, one
        ``integers(0, count)``), without building the arrays."""
        span_first = self.canvas - self.first_size + 1
        span_second = self.canvas - self.second_size + 1
        if self.overlap:
            return np.stack([rng.integers(0, span_first, 2), rng.integers(0, span_second, 2)])
        sy, sx = divmod(int(self._second_cdf.searchsorted(rng.random(), side="right")), span_second)
        # first-digit starts that overlap the second digit, per axis: [lo, hi)
        (y0, y1), (x0, x1) = ((max(0, s - self.first_size + 1), min(span_first, s + self.second_size))
                              for s in (sy, sx))
        band, width = y1 - y0, span_first - (x1 - x0)  # blocked rows; free cells in each
        j = int(rng.integers(0, span_first ** 2 - band * (x1 - x0)))
        if j >= y0 * span_first:  # past the full rows above the band
            j -= y0 * span_first
            if j < band * width:  # in the band: skip the blocked columns
                fy, fx = divmod(j, width)
                return np.array([[y0 + fy, fx if fx < x0 else fx + x1 - x0], [sy, sx]])
            j += y1 * span_first - band * width
        return np.array([divmod(j, span_first), (sy, sx)])

    def __getitem__(self, index):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices) -> list:
        """``[self[i] for i in indices]``, drawn and composed together (a DataLoader's batch):
        each item's digits and corners from its own generator, then the two resized digits of
        every item in one call per size, added onto the canvases (first, then second)."""
        indices = [check_index(i, self.size) for i in indices]
        if not indices:
            return []
        picks = np.empty((len(indices), 2), np.int64)
        corners = np.empty((len(indices), 2, 2), np.int64)
        for b, rng in enumerate(item_rngs(self.seed, indices, "TwoDigitSizes")):
            picks[b] = rng.integers(0, len(self.labels), 2)
            corners[b] = self._corners(rng)
        images = self._compose(self.canvas, [self._digits(picks[:, 0], self.first_size),
                                             self._digits(picks[:, 1], self.second_size)], corners)
        classes = self.labels[torch.from_numpy(picks)]
        positions, mnist_index = torch.from_numpy(corners), torch.from_numpy(picks)
        sizes = torch.tensor([self.first_size, self.second_size])
        return [(image, {"first_digit": first, "second_digit": second, "digits": pair,
                         "positions": position, "sizes": sizes.clone(), "mnist_index": picked})
                for image, (first, second), pair, position, picked
                in zip(images.unbind(0), classes.tolist(), classes.unbind(0), positions.unbind(0),
                       mnist_index.unbind(0))]


class RandomBits(Dataset):
    """Feature suppression by random bits: ``bits`` extra channels, each a constant 0 or 1
    over the whole image, appended to the images of ``base`` (default: MNIST's train split,
    as :class:`~pyclr.data.mnist.MNIST`).

    The rule: item ``i``'s bits are ``bits`` fair coin flips drawn from a generator seeded by
    (``seed``, ``i``): bit ``j`` is the top bit of the ``j``-th 32-bit output of numpy's PCG64
    seeded by ``item_rng`` (the low half of each 64-bit output, then the high half), which is
    what ``Generator.integers(0, 2, bits)`` draws. Channel ``C + j`` (after the base's ``C``
    channels) is bit ``j``, and the label ``bits`` is the integer ``sum_j bit_j · 2**j``. The bits
    are a function of the item alone, so both augmented views of an image share them. Labels:
    the base's (a bare class becomes ``label``) plus ``bits``.

    ``__getitems__`` (which a DataLoader calls with a batch's indices) draws the bits of many
    items at once and fetches the base's images with its ``__getitems__`` where it has one;
    its items equal ``data[i]``'s bit for bit (views of the batch's tensors).
    """

    def __init__(self, bits: int = 0, base: Dataset | None = None, seed: int = 0):
        # 63 bits keep the ``bits`` label an int64.
        self.bits = check_int("bits", bits, 0, 63)
        self.seed = check_seed(seed)
        if base is not None:
            _check_dataset("base", base)
        self.base = MNIST() if base is None else base

    def __len__(self) -> int:
        return len(self.base)

    def bit_values(self, index: int) -> np.ndarray:
        """Item ``index``'s bits (0/1 int64, length ``bits``): the rule above."""
        return np.array(self._draw_bits(item_rng(self.seed, index, "RandomBits")), dtype=np.int64)

    def _draw_bits(self, rng: np.random.Generator) -> list:
        """The rule: the top bit of each 32-bit half, low then high, of PCG64's 64-bit outputs
        (read directly: ``integers`` draws the same bits, at 4 us a call)."""
        words = rng.bit_generator.random_raw((self.bits + 1) // 2).tolist()
        return [(word >> shift) & 1 for word in words for shift in (31, 63)][: self.bits]

    def __getitem__(self, index):
        i = check_index(index, len(self))
        image, base_labels = _base_item("base", i, self.base[i])
        # a uint8 image got bits of 1 (1/255 once read as x / 255); a channels-last one bits along H
        _check_base_image("base", i, image)
        values = self.bit_values(i)
        planes = torch.as_tensor(values, dtype=image.dtype)[:, None, None]
        planes = planes.expand(self.bits, *image.shape[1:])
        labels = as_labels(base_labels)
        labels["bits"] = int(sum(int(v) << j for j, v in enumerate(values)))
        return torch.cat([image, planes]), labels

    def __getitems__(self, indices) -> list:
        """``[self[i] for i in indices]``, built together (a DataLoader's batch)."""
        indices = [check_index(i, len(self)) for i in indices]
        if not indices:
            return []
        fetch = getattr(self.base, "__getitems__", None)
        base_items = [_base_item("base", i, item)
                      for i, item in zip(indices, fetch(indices) if fetch else [self.base[i] for i in indices])]
        values = np.array([self._draw_bits(rng) for rng in item_rngs(self.seed, indices, "RandomBits")],
                          dtype=np.int64).reshape(len(indices), self.bits)
        codes = (values.astype(np.uint64) << np.arange(self.bits, dtype=np.uint64)).sum(1).tolist()
        planes = torch.from_numpy(values)
        images = [_check_base_image("base", i, image) for i, (image, _) in zip(indices, base_items)]
        labels = [as_labels(b) for _, b in base_items]
        first = images[0]
        if all(image.shape == first.shape and image.dtype == first.dtype for image in images):
            channels = first.shape[0]
            out = torch.empty(len(images), channels + self.bits, *first.shape[1:], dtype=first.dtype)
            out[:, :channels] = torch.stack(images)
            out[:, channels:] = planes.to(first.dtype)[:, :, None, None]
            images = out.unbind(0)
        else:  # images of several shapes: one at a time
            images = [torch.cat([image, plane.to(image.dtype)[:, None, None].expand(self.bits, *image.shape[1:])])
                      for image, plane in zip(images, planes)]
        for row, code in zip(labels, codes):
            row["bits"] = code
        return list(zip(images, labels))


class DigitsOnImages(_DigitSource):
    """Feature suppression by an overlaid digit: on each image of ``images`` (a dataset of
    ``(image (C, H, W) float in [0, 1], labels)``), a digit drawn from a pool of
    ``unique_digits`` MNIST digits is overlaid by pixel-wise max in every channel.

    The pool is ``unique_digits`` distinct MNIST digits chosen by ``seed``; item ``i`` takes
    pool entry ``digit_id`` drawn from (``seed``, ``i``). ``digit_size=None`` stretches the digit
    over the whole image (H×W); an int places a ``digit_size``² digit at a random position.
    Labels: the image's (a bare class becomes ``label``) plus ``digit`` (its class) and
    ``digit_id`` (its pool entry). ``root``, ``train``, ``download``: the digits' source.
    Each pool digit is resized once per image size and kept (up to ``RESIZED_BYTES``).
    """

    def __init__(self, images: Dataset, unique_digits: int = 100, digit_size: int | None = None,
                 seed: int = 0, root=None, train: bool = True, download: bool = False):
        _check_dataset("images", images)
        self.images_dataset = images
        self.unique_digits = check_int("unique_digits", unique_digits, 1)
        self.digit_size = None if digit_size is None else check_int("digit_size", digit_size, 1)
        self.seed = check_seed(seed)
        self._load(root, train, download)
        if self.unique_digits > len(self.labels):
            raise ValueError(f"unique_digits: expected at most the {len(self.labels)} digits of "
                             f"the MNIST source ({self.source}), got {self.unique_digits}")
        pool_rng = np.random.default_rng([self.seed, salt("DigitsOnImages pool")])
        self.pool = pool_rng.choice(len(self.labels), self.unique_digits, replace=False)
        self._resized: dict = {}  # (MNIST index, height, width) -> the resized digit
        self._resized_bytes = 0

    # Bytes of resized pool digits kept (the pool is small and images share a few sizes, so
    # each digit is resized once per size, not once per item).
    RESIZED_BYTES = 64 << 20

    def _pool_digit(self, k: int, height: int, width: int) -> torch.Tensor:
        """Digit ``k`` resized to (1, height, width), from the cache when it was resized before
        (the oldest entries make room past RESIZED_BYTES). Callers must not modify it."""
        digit = self._resized.get((k, height, width))
        if digit is None:
            digit = self._digit(k, height, width)
            while self._resized and self._resized_bytes + digit.nbytes > self.RESIZED_BYTES:
                self._resized_bytes -= self._resized.pop(next(iter(self._resized))).nbytes
            self._resized[(k, height, width)] = digit
            self._resized_bytes += digit.nbytes
        return digit

    def __len__(self) -> int:
        return len(self.images_dataset)

    def _overlay(self, image: torch.Tensor, k: int, rng: np.random.Generator) -> torch.Tensor:
        h, w = image.shape[-2:]
        if self.digit_size is None:
            return torch.maximum(image, self._pool_digit(k, h, w).to(image.dtype))  # float16 stays float16
        if self.digit_size > min(h, w):
            raise ValueError(f"digit_size: a {self.digit_size}×{self.digit_size} digit does not "
                             f"fit on a {h}×{w} image")
        y, x = rng.integers(0, h - self.digit_size + 1), rng.integers(0, w - self.digit_size + 1)
        out = image.clone()
        patch = out[:, y:y + self.digit_size, x:x + self.digit_size]
        torch.maximum(patch, self._pool_digit(k, self.digit_size, self.digit_size), out=patch)
        return out

    def __getitem__(self, index):
        i = check_index(index, len(self))
        image, base_labels = self.images_dataset[i]
        _check_base_image("images", i, image)
        rng = item_rng(self.seed, i, "DigitsOnImages")
        slot = int(rng.integers(0, self.unique_digits))
        k = int(self.pool[slot])
        labels = as_labels(base_labels)
        labels.update(digit=int(self.labels[k]), digit_id=slot)
        return self._overlay(image, k, rng), labels
