import numpy as np
import pytest
import torch

from pyclr.data import Sprites, hsluv_to_rgb, husl_palette, sprites_decoding_split
from pyclr.data.sprites import CENTRES


@pytest.fixture(scope="module")
def sprites():
    return Sprites()


def lit(image: torch.Tensor) -> torch.Tensor:
    return image.amax(0) > 0


def test_count_and_labels_round_trip(sprites):
    assert len(sprites) == 15_360
    seen = set()
    for i in range(len(sprites)):
        f = Sprites.factors(i)
        assert Sprites.index(f["colour"], f["scale"], f["x"], f["y"]) == i
        assert f["position"] == f["x"] * 16 + f["y"]
        seen.add((f["colour"], f["scale"], f["x"], f["y"]))
    assert len(seen) == 15_360  # the full cross 10 × 6 × 16 × 16


def test_item_labels_and_image(sprites):
    for i in np.random.default_rng(0).integers(0, 15_360, 30):
        image, labels = sprites[int(i)]
        assert labels == Sprites.factors(int(i))
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert image.min() == 0 and image.max() <= 1
        assert image[:, 0, 0].sum() == 0 and image[:, -1, -1].sum() == 0  # black background
        inner = image[:, lit(image)]  # every lit pixel is a shade of the item's colour
        colour = sprites.palette[labels["colour"]]
        weights = inner[0] / colour[0]
        assert torch.allclose(inner, colour[:, None] * weights, atol=1e-6)
        assert torch.isclose(weights.max(), torch.tensor(1.0))  # an interior pixel is the colour


def test_palette_is_ten_distinct_husl_hues():
    palette = husl_palette()
    assert palette.shape == (10, 3) and 0 <= palette.min() and palette.max() <= 1
    assert torch.cdist(palette, palette).add(torch.eye(10)).min() > 0.1
    assert hsluv_to_rgb(123.0, 0.0, 50.0)[0] == pytest.approx(hsluv_to_rgb(123.0, 0.0, 50.0)[2])
    assert hsluv_to_rgb(0, 0, 100) == (1.0, 1.0, 1.0) and hsluv_to_rgb(0, 0, 0) == (0.0, 0.0, 0.0)
    # seaborn.husl_palette(10)[0], the first colour the paper's palette would use
    assert palette[0].tolist() == pytest.approx([0.9678, 0.4413, 0.5358], abs=2e-3)
    for bad in (-1, 0, 10**9):  # -1 gave an empty palette, 10**9 ran for minutes
        with pytest.raises(ValueError, match="n_colours: expected an int in 1..65536"):
            husl_palette(bad)


@pytest.mark.parametrize("call,error,message", [
    (lambda: hsluv_to_rgb(float("nan"), 50, 50), ValueError, "hue: expected a finite number, got nan"),  # was (nan, nan, nan)
    (lambda: hsluv_to_rgb(float("inf"), 50, 50), ValueError, "hue: expected a finite number, got inf"),  # math domain error
    (lambda: hsluv_to_rgb(10, 150, 50), ValueError, r"saturation: expected a finite number in \[0, 100\]"),
    (lambda: husl_palette(3, l=float("nan")), ValueError, r"l: expected a finite number in \[0, 1\], got nan"),  # a NaN palette
    (lambda: husl_palette(3, s=2), ValueError, r"s: expected a finite number in \[0, 1\], got 2"),
    (lambda: Sprites().coverage(-1, 0, 0), ValueError, "scale: expected an int in 0..5, got -1"),  # wrapped
    (lambda: Sprites().coverage(0, 16, 0), ValueError, "x: expected an int in 0..15, got 16"),  # IndexError
    (lambda: Sprites().coverage(0.5, 0, 0), TypeError, "scale: expected an int"),
    # every position held out: an empty training list, without a word
    (lambda: sprites_decoding_split("colour", held_out_positions=0.9999), ValueError,
     "held_out_positions: 0.9999 of the 256 positions rounds to all of them"),
])
def test_colour_and_coverage_arguments_are_checked(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_hsluv_matches_reference_package():
    hsluv = pytest.importorskip("hsluv")
    rng = np.random.default_rng(0)
    for h, s, l in rng.uniform([0, 0, 0], [360, 100, 100], (500, 3)):
        assert hsluv_to_rgb(h, s, l) == pytest.approx(hsluv.hsluv_to_rgb([h, s, l]), abs=1e-9)


def test_scale_grows_the_shape(sprites):
    areas = [lit(sprites[Sprites.index(3, s, 8, 8)][0]).sum().item() for s in range(6)]
    assert all(a < b for a, b in zip(areas, areas[1:]))
    assert areas[-1] / areas[0] == pytest.approx(4.0, rel=0.15)  # scale 0.5 -> 1: 4x the area


def test_position_moves_the_centroid(sprites):
    ys, xs = torch.meshgrid(torch.arange(64.0) + 0.5, torch.arange(64.0) + 0.5, indexing="ij")
    square = Sprites("square")
    for x, y in [(0, 0), (5, 11), (15, 15), (15, 0)]:
        cover = square.coverage(5, x, y)
        cy, cx = (cover * ys).sum() / cover.sum(), (cover * xs).sum() / cover.sum()
        assert cx.item() == pytest.approx(CENTRES[x], abs=0.2)  # 1/4-pixel supersampling
        assert cy.item() == pytest.approx(CENTRES[y], abs=0.2)
        assert cover.sum().item() == pytest.approx(24 ** 2, rel=0.01)
    cx = [(lit(sprites[Sprites.index(0, 2, x, 4)][0]).float() * xs).sum() for x in range(16)]
    assert all(a < b for a, b in zip(cx, cx[1:]))


@pytest.mark.parametrize("shape", ["heart", "square", "ellipse"])
def test_shapes_fit_inside_the_image(shape):
    data = Sprites(shape)
    for x, y in [(0, 0), (15, 15)]:
        cover = data.coverage(5, x, y)
        assert cover.sum() > 50 and cover[0].sum() == 0 and cover[:, -1].sum() == 0


def test_colour_split():
    train, val = sprites_decoding_split("colour", seed=0)
    f_train = [Sprites.factors(i) for i in train]
    f_val = [Sprites.factors(i) for i in val]
    assert not set(train) & set(val)
    held_scales = {f["scale"] for f in f_val}
    held_positions = {f["position"] for f in f_val}
    assert len(held_scales) == 2 and len(held_positions) == 26  # 2 scales, 10% of 256
    assert all(f["scale"] not in held_scales and f["position"] not in held_positions for f in f_train)
    assert {f["colour"] for f in f_val} == {f["colour"] for f in f_train} == set(range(10))
    assert len(train) == 10 * 4 * 230 and len(val) == 10 * 2 * 26


@pytest.mark.parametrize("target", ["scale", "position", "x", "y"])
def test_held_out_colour_split(target):
    train, val = sprites_decoding_split(target, seed=3)
    assert sorted(train + val) == list(range(15_360))
    colours_val = {Sprites.factors(i)["colour"] for i in val}
    colours_train = {Sprites.factors(i)["colour"] for i in train}
    assert len(colours_val) == 2 and not colours_val & colours_train
    assert {Sprites.factors(i)["scale"] for i in val} == set(range(6))


def test_splits_are_seeded():
    assert sprites_decoding_split("colour", seed=1) == sprites_decoding_split("colour", seed=1)
    assert sprites_decoding_split("colour", seed=1)[1] != sprites_decoding_split("colour", seed=2)[1]


def test_bad_arguments():
    with pytest.raises(ValueError, match="target: expected one of 'colour', 'scale'"):
        sprites_decoding_split("hue")
    with pytest.raises(ValueError, match="shape: expected one of"):
        Sprites("star")
    with pytest.raises(ValueError, match=r"colour: expected an int in 0..9, got 10"):
        Sprites.index(10, 0, 0, 0)
    with pytest.raises(ValueError, match="held_out_positions"):
        sprites_decoding_split("colour", held_out_positions=1.5)
    with pytest.raises(IndexError):
        Sprites()[15_360]
