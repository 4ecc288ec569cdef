"""Hermann et al. (2020): the sprites dataset (a dSprites variant: colour × scale × position)
and its decoding splits."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import check_choice, check_int, check_real
from ._util import check_index, check_seed, salt

COLOURS, SCALES, POSITIONS = 10, 6, 16
IMAGE = 64
# dSprites' six scales; the largest shape spans MAX_SIDE pixels, and centres run over a
# 16-step grid that keeps the largest shape MARGIN pixels from the border.
SCALE_VALUES = np.linspace(0.5, 1.0, SCALES)
MAX_SIDE, MARGIN = 24, 2
CENTRES = np.linspace(MAX_SIDE / 2 + MARGIN, IMAGE - MAX_SIDE / 2 - MARGIN, POSITIONS)
SUPERSAMPLE = 4  # sub-pixel samples per axis: anti-aliased edges at sub-pixel positions
SHAPES = ("heart", "square", "ellipse")

# --- HSLuv (www.hsluv.org), the successor of HUSL: a hue circle of even perceived lightness.
_M = ((3.240969941904521, -1.537383177570093, -0.498610760293),
      (-0.96924363628087, 1.87596750150772, 0.041555057407175),
      (0.055630079696993, -0.20397695888897, 1.056971514242878))
_REF_U, _REF_V = 0.19783000664283, 0.46831999493879
_KAPPA, _EPSILON = 903.2962962, 0.0088564516


def _max_chroma(lightness: float, hue_rad: float) -> float:
    """The largest chroma inside the sRGB gamut at this lightness and hue (the lines bounding
    the gamut in the CIELUV chroma plane, intersected with the hue ray)."""
    sub1 = (lightness + 16) ** 3 / 1560896
    sub2 = sub1 if sub1 > _EPSILON else lightness / _KAPPA
    best = math.inf
    for m1, m2, m3 in _M:
        for t in (0, 1):
            top1 = (284517 * m1 - 94839 * m3) * sub2
            top2 = (838422 * m3 + 769860 * m2 + 731718 * m1) * lightness * sub2 - 769860 * t * lightness
            bottom = (632260 * m3 - 126452 * m2) * sub2 + 126452 * t
            slope, intercept = top1 / bottom, top2 / bottom
            length = intercept / (math.sin(hue_rad) - slope * math.cos(hue_rad))
            if length >= 0:
                best = min(best, length)
    return best


def _from_linear(c: float) -> float:
    return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055


def hsluv_to_rgb(hue: float, saturation: float, lightness: float) -> tuple[float, float, float]:
    """HSLuv (hue in degrees, saturation and lightness in 0..100) to sRGB in [0, 1]."""
    hue = check_real("hue", hue)  # NaN gave (nan, nan, nan), inf a 'math domain error'
    saturation = check_real("saturation", saturation, 0, 100)
    lightness = check_real("lightness", lightness, 0, 100)
    if lightness > 99.9999999:
        return 1.0, 1.0, 1.0
    if lightness < 1e-8:
        return 0.0, 0.0, 0.0
    hue_rad = math.radians(hue)
    chroma = _max_chroma(lightness, hue_rad) / 100 * saturation
    u, v = chroma * math.cos(hue_rad), chroma * math.sin(hue_rad)  # LCh -> CIELUV
    var_u, var_v = u / (13 * lightness) + _REF_U, v / (13 * lightness) + _REF_V  # CIELUV -> XYZ
    y = lightness / _KAPPA if lightness <= 8 else ((lightness + 16) / 116) ** 3
    x = -(9 * y * var_u) / ((var_u - 4) * var_v - var_u * var_v)
    z = (9 * y - 15 * var_v * y - var_v * x) / (3 * var_v)
    rgb = (_from_linear(m[0] * x + m[1] * y + m[2] * z) for m in _M)
    return tuple(min(max(c, 0.0), 1.0) for c in rgb)


def husl_palette(n_colours: int = COLOURS, h: float = 0.01, s: float = 0.9,
                 l: float = 0.65) -> torch.Tensor:  # noqa: E741 (seaborn's argument names)
    """``n_colours`` hues evenly spaced in HUSL at fixed saturation and lightness, as
    ``seaborn.husl_palette`` computes them (same defaults): an (n, 3) float tensor."""
    n_colours = check_int("n_colours", n_colours, 1, 1 << 16)
    h, s, l = check_real("h", h), check_real("s", s, 0, 1), check_real("l", l, 0, 1)  # noqa: E741
    hues = (np.arange(n_colours) / n_colours + h) % 1 * 359
    return torch.tensor([hsluv_to_rgb(hue, s * 99, l * 99) for hue in hues], dtype=torch.float32)


# --- shapes, as inside-tests on coordinates (u, v) in [-1, 1]² (v pointing down)
def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if shape == "square":
        return (np.abs(u) <= 1) & (np.abs(v) <= 1)
    if shape == "ellipse":  # fixed orientation: the long axis horizontal
        return u ** 2 + (v / 0.5) ** 2 <= 1
    # heart: (x² + y² − 1)³ − x² y³ ≤ 0, scaled and shifted to fill the box, point down
    x, y = 1.14 * u, -1.13 * v + 0.12
    return (x ** 2 + y ** 2 - 1) ** 3 - x ** 2 * y ** 3 <= 0


class Sprites(Dataset):
    """15,360 images of 64×64 RGB: one ``shape`` at a fixed orientation on black, in each of
    10 colours × 6 scales × 16 x-positions × 16 y-positions (Hermann et al., Sec. 3).

    Colours are :func:`husl_palette` (10 hues evenly spaced in HUSL); scales are dSprites'
    0.5…1 of a 24-pixel shape; centres are 16 evenly spaced values from 14 to 50 pixels on
    each axis (the largest shape stays 2 pixels from the border). Edges are anti-aliased by 4×4 supersampling. Item order is dSprites' (colour,
    scale, x, y), y fastest; :meth:`index` and :meth:`factors` convert. Labels: ``colour``,
    ``scale``, ``x``, ``y`` and ``position`` (``x * 16 + y``, the 256-way position class).
    """

    def __init__(self, shape: str = "heart"):
        check_choice("shape", shape, SHAPES)
        self.shape = shape
        self.palette = husl_palette()
        # Sub-pixel sample coordinates (pixel centres at +0.5) along one axis.
        self._samples = (np.arange(IMAGE * SUPERSAMPLE) + 0.5) / SUPERSAMPLE

    def __len__(self) -> int:
        return COLOURS * SCALES * POSITIONS * POSITIONS

    @staticmethod
    def index(colour: int, scale: int, x: int, y: int) -> int:
        """The item index of a factor combination."""
        colour = check_int("colour", colour, 0, COLOURS - 1)
        scale = check_int("scale", scale, 0, SCALES - 1)
        x = check_int("x", x, 0, POSITIONS - 1)
        y = check_int("y", y, 0, POSITIONS - 1)
        return ((colour * SCALES + scale) * POSITIONS + x) * POSITIONS + y

    @staticmethod
    def factors(index: int) -> dict:
        """The labels of item ``index``: ``colour``, ``scale``, ``x``, ``y``, ``position``."""
        i = check_index(index, COLOURS * SCALES * POSITIONS * POSITIONS)
        rest, y = divmod(i, POSITIONS)
        rest, x = divmod(rest, POSITIONS)
        colour, scale = divmod(rest, SCALES)
        return {"colour": colour, "scale": scale, "x": x, "y": y, "position": x * POSITIONS + y}

    def coverage(self, scale: int, x: int, y: int) -> torch.Tensor:
        """The shape's (64, 64) coverage in [0, 1] (the fraction of each pixel it covers)."""
        scale = check_int("scale", scale, 0, SCALES - 1)  # numpy wrapped -1 to the largest scale
        x, y = check_int("x", x, 0, POSITIONS - 1), check_int("y", y, 0, POSITIONS - 1)
        half = SCALE_VALUES[scale] * MAX_SIDE / 2
        cover = torch.zeros(IMAGE, IMAGE)
        # Every shape lies inside its box (|u|, |v| <= 1): sample only the pixels the box meets.
        rows, cols = (self._span(CENTRES[c], half) for c in (y, x))
        u = (self._samples[cols.start * SUPERSAMPLE:cols.stop * SUPERSAMPLE] - CENTRES[x]) / half
        v = (self._samples[rows.start * SUPERSAMPLE:rows.stop * SUPERSAMPLE] - CENTRES[y]) / half
        inside = _inside(self.shape, u[None, :], v[:, None]).astype(np.float32)
        h, w = rows.stop - rows.start, cols.stop - cols.start
        cover[rows, cols] = torch.from_numpy(inside.reshape(h, SUPERSAMPLE, w, SUPERSAMPLE).mean(axis=(1, 3)))
        return cover

    @staticmethod
    def _span(centre: float, half: float) -> slice:
        return slice(max(0, math.floor(centre - half)), min(IMAGE, math.ceil(centre + half)))

    def __getitem__(self, index):
        labels = self.factors(index)
        cover = self.coverage(labels["scale"], labels["x"], labels["y"])
        return self.palette[labels["colour"]][:, None, None] * cover, labels


def sprites_decoding_split(target: str, seed: int = 0, held_out_scales: int = 2,
                           held_out_positions: float = 0.1,
                           held_out_colours: int = 2) -> tuple[list[int], list[int]]:
    """``(train_indices, validation_indices)`` for a decoder of ``target`` (Hermann et al.,
    Sec. 3): a probe must generalise to values of the *other* factors it never saw.

    - ``"colour"``: ``held_out_scales`` scales and a ``held_out_positions`` fraction of the 256
      (x, y) positions are held out; train on items with neither, validate on items with both.
      (Items with exactly one held-out value are in neither list.)
    - ``"scale"``, ``"position"``, ``"x"``, ``"y"``: ``held_out_colours`` colours are held out;
      train on the other colours, validate on those.

    The held-out values are drawn from ``seed``.
    """
    check_choice("target", target, ("colour", "scale", "position", "x", "y"))
    seed = check_seed(seed)
    rng = np.random.default_rng([seed, salt("sprites_decoding_split")])
    factors = [Sprites.factors(i) for i in range(COLOURS * SCALES * POSITIONS ** 2)]
    if target == "colour":
        check_int("held_out_scales", held_out_scales, 1, SCALES - 1)
        held_out_positions = check_real("held_out_positions", held_out_positions, 0, 1, inclusive=False)
        scales = set(rng.choice(SCALES, held_out_scales, replace=False).tolist())
        count = max(1, round(held_out_positions * POSITIONS ** 2))
        if count == POSITIONS ** 2:  # every position held out: an empty training list
            raise ValueError(f"held_out_positions: {held_out_positions} of the {POSITIONS ** 2} positions rounds "
                             "to all of them, leaving nothing to train on")
        positions = set(rng.choice(POSITIONS ** 2, count, replace=False).tolist())
        seen = [(f["scale"] in scales, f["position"] in positions) for f in factors]
        train = [i for i, (s, p) in enumerate(seen) if not s and not p]
        validation = [i for i, (s, p) in enumerate(seen) if s and p]
        return train, validation
    check_int("held_out_colours", held_out_colours, 1, COLOURS - 1)
    colours = set(rng.choice(COLOURS, held_out_colours, replace=False).tolist())
    train = [i for i, f in enumerate(factors) if f["colour"] not in colours]
    validation = [i for i, f in enumerate(factors) if f["colour"] in colours]
    return train, validation
