"""pyclr.render.overlay and .figure: the addWeighted overlay on the grey-scale image, figure
grids and the PNG files."""
import numpy as np
import pytest
import torch

from pyclr.render import figure_grid, label_margins, overlay, palette, write_png
from pyclr.render.figure import GAP

cv2 = pytest.importorskip("cv2")


def random_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def random_labels(h, w, k, seed=0):
    return torch.randint(0, k, (h, w), generator=torch.Generator().manual_seed(seed))


def test_overlay_is_the_add_weighted_formula_on_a_grey_image():
    grey = random_image(5, 7)[..., :1].repeat(3, axis=2)   # R = G = B: its own grey scale
    labels = random_labels(5, 7, 3)
    colours = torch.tensor([4, 0, 9])
    out = overlay(grey, labels, colours)
    mask = palette(10)[colours[labels].numpy()].astype(np.float64)
    # 0.4 g + 0.4 c = 2 (g + c) / 5 never ends in .5, so rounding is unambiguous
    expected = np.rint(0.4 * grey + 0.4 * mask).astype(np.uint8)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    assert np.array_equal(out, expected)


def test_overlay_of_a_colour_image_uses_its_luma():
    image = random_image(6, 4, seed=1)
    labels = random_labels(6, 4, 2, seed=1)
    rgb = np.array([[10, 200, 30], [250, 5, 128]], dtype=np.uint8)  # explicit colours
    out = overlay(image, labels, rgb, alpha=0.5, beta=0.25)
    luma = 0.299 * image[..., 0] + 0.587 * image[..., 1] + 0.114 * image[..., 2]
    expected = 0.5 * np.rint(luma)[..., None] + 0.25 * rgb[labels.numpy()]
    # OpenCV rounds its fixed-point luma and the weighted sum: at most one step apart
    assert np.abs(out.astype(int) - expected).max() <= 1.0
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    exact = cv2.addWeighted(np.repeat(grey[..., None], 3, 2), 0.5, rgb[labels.numpy()], 0.25, 0)
    assert np.array_equal(out, exact)


def test_overlay_takes_float_and_channels_first_images():
    image = random_image(4, 6, seed=2)
    labels = random_labels(4, 6, 3, seed=2)
    colours = [0, 1, 2]
    reference = overlay(image, labels, colours)
    as_float = torch.from_numpy(image).permute(2, 0, 1).double() / 255
    assert np.array_equal(overlay(as_float, labels, colours), reference)
    assert np.array_equal(overlay(image.transpose(2, 0, 1), labels.numpy(), colours), reference)


@pytest.mark.parametrize("call,message", [
    (lambda: overlay(random_image(4, 4), random_labels(4, 5, 2), [0, 1]), r"labels: expected the image's \(H, W\)"),
    (lambda: overlay(np.full((4, 4, 3), 1.5), random_labels(4, 4, 2), [0, 1]),
     r"image: expected floating-point values in \[0, 1\]"),
    (lambda: overlay(random_image(4, 4)[..., :2], random_labels(4, 4, 2), [0, 1]), r"image: expected a \(3, H, W\)"),
    (lambda: overlay(random_image(4, 4), random_labels(4, 4, 3), [0, 1]), "colours: expected one colour per cluster"),
    (lambda: overlay(random_image(4, 4), random_labels(4, 4, 2), [0, 1], alpha=-1), "alpha: expected a finite number"),
])
def test_overlay_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_to_rgb_uint8_takes_16_bit_tensors_and_refuses_empty_images():
    from pyclr.render import to_rgb_uint8

    image = torch.rand(3, 4, 5)
    assert np.array_equal(to_rgb_uint8(image.bfloat16()), to_rgb_uint8(image.bfloat16().float()))  # numpy has no bf16
    with pytest.raises(ValueError, match=r"image: expected a \(3, H, W\) or \(H, W, 3\) image, got ndarray of shape "
                                         r"\(0, 0, 3\)"):
        to_rgb_uint8(np.zeros((0, 0, 3), np.float32))


def test_figure_places_tiles_on_the_grid_and_the_png_matches(tmp_path):
    tiles = [[random_image(30, 40, seed=3 * r + c) for c in range(3)] for r in range(2)]
    rows, cols = ["block2", "block3"], ["k = 2", "k = 4", "k = 6"]
    path = tmp_path / "sub" / "figure.png"
    figure = figure_grid(tiles, rows, cols, str(path))
    left, top = label_margins(rows, cols, (30, 40))
    assert left > 0 and top > 0
    assert figure.shape == (top + 2 * 30 + GAP, left + 3 * 40 + 2 * GAP, 3)
    for r in range(2):
        for c in range(3):
            y, x = top + r * (30 + GAP), left + c * (40 + GAP)
            assert np.array_equal(figure[y:y + 30, x:x + 40], tiles[r][c])
    assert (figure[:top, left:] < 128).any() and (figure[top:, :left] < 128).any()  # the text
    written = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(cv2.cvtColor(written, cv2.COLOR_BGR2RGB), figure)


def test_the_written_overlay_has_the_image_size(tmp_path):
    image = random_image(37, 53, seed=4)
    tile = overlay(image, random_labels(37, 53, 4, seed=4), [3, 1, 0, 2])
    path = write_png(str(tmp_path / "overlay.png"), tile)
    back = cv2.imread(path)
    assert back.shape == (37, 53, 3) and np.array_equal(back[..., ::-1], tile)
    # a one-tile figure without labels is the tile itself
    assert np.array_equal(figure_grid([[tile]]), tile)


@pytest.mark.parametrize("call,message", [
    (lambda: figure_grid([[random_image(4, 4)], [random_image(4, 5)]]), r"tiles\[1\]\[0\]: expected the shape of tiles\[0\]\[0\], \(4, 4, 3\), got \(4, 5, 3\)"),
    # empty images reached OpenCV, whose own errors name no argument
    (lambda: figure_grid([[random_image(0, 4)]]), r"tiles\[0\]\[0\]: expected .* H, W >= 1"),
    (lambda: write_png("figure.png", random_image(4, 0)), r"rgb: expected .* with H, W >= 1"),
    (lambda: figure_grid([[random_image(4, 4)], []]), "tiles: expected a non-empty list"),
    (lambda: figure_grid([[random_image(4, 4), random_image(4, 4)], [random_image(4, 4)]]),
     "tiles: expected 2 tiles in every row"),
    (lambda: figure_grid([[random_image(4, 4)]], row_labels=["a", "b"]), "row_labels: expected 1 strings"),
    (lambda: write_png("figure.jpg", random_image(4, 4)), "path: expected a file name ending in .png"),
])
def test_figure_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_write_png_into_a_file_and_margins_of_other_labels(tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("")
    with pytest.raises(ValueError, match="path: .*taken exists and is not a folder"):  # was FileExistsError
        write_png(str(blocker / "figure.png"), random_image(4, 4))
    with pytest.raises(TypeError, match="row_labels: expected a list of strings"):  # OpenCV's overload error
        label_margins([1], ["a"], (30, 40))


@pytest.mark.parametrize("colours,dtype", [(None, "object"), ("red", "<U3"), ([0.5, 1.5], "float64")])
def test_overlay_colours_that_are_not_integers_are_named(colours, dtype):
    # None and 'red' failed in torch.from_numpy ("can't convert np.ndarray of type numpy.object_")
    with pytest.raises(TypeError, match=f"colours: expected integers, got a numpy array of {dtype}"):
        overlay(random_image(4, 4), random_labels(4, 4, 2), colours)
