import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

from pyclr.data import CIFAR10, DigitsOnImages, ImageFolder, NaturalImages, natural_images
from pyclr.data.real import SKIMAGE_IMAGES, SKLEARN_IMAGES

from .helpers import needs_embedded_digits, no_network, write_fake_cifar  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_network")
needs_pillow = pytest.mark.skipif(importlib.util.find_spec("PIL") is None,
                                  reason="ImageFolder reads with Pillow")
has_skimage = importlib.util.find_spec("skimage") is not None
has_sklearn = importlib.util.find_spec("sklearn") is not None


# --- CIFAR-10
@pytest.mark.parametrize("point_at", ["parent", "folder"])
def test_cifar10_reads_the_pickle_folder(tmp_path, point_at):
    batches = write_fake_cifar(tmp_path / "cifar-10-batches-py")
    root = tmp_path if point_at == "parent" else tmp_path / "cifar-10-batches-py"
    train, test = CIFAR10(root), CIFAR10(root, train=False)
    assert len(train) == 20 and len(test) == 3
    assert train.classes == tuple(f"class{k}" for k in range(10))
    image, labels = train[6]  # the third image of data_batch_2
    expected = batches["data_batch_2"][b"data"][2].reshape(3, 32, 32)
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert torch.allclose(image, torch.from_numpy(expected).float() / 255)
    assert labels == {"label": batches["data_batch_2"][b"labels"][2]}
    assert test[2][1]["label"] == batches["test_batch"][b"labels"][2]


def test_cifar10_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data_batch_1.*download=True"):
        CIFAR10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    write_fake_cifar(folder)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="data_batch_3: not a CIFAR-10 python batch"):
        CIFAR10(tmp_path)
    (folder / "test_batch").write_bytes(__import__("pickle").dumps(
        {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"test_batch: expected data \(n, 3072\)"):
        CIFAR10(tmp_path, train=False)


@pytest.mark.parametrize("batch,meta,message", [
    # each was read silently wrong: int64 data wrapped to uint8, 0.5 labels truncated to 0,
    # a meta of two names for labels that go to 9
    ({b"data": np.full((2, 3072), 300, np.int64), b"labels": [0, 1]}, None, "expected data bytes 0..255, got int64"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0.5, 1.0]}, None, "expected integer labels, got float64"),
    (None, [b"cat", b"dog"], "batches.meta: expected 10 label names, got 2"),
])
def test_cifar10_values_the_casts_would_change_are_refused(tmp_path, batch, meta, message):
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    write_fake_cifar(folder)
    if batch is not None:
        (folder / "test_batch").write_bytes(pickle.dumps(batch))
    if meta is not None:
        (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": meta}))
    with pytest.raises(ValueError, match=message):
        CIFAR10(tmp_path, train=False)


def test_cifar10_download_through_torchvision(tmp_path, monkeypatch):
    class FakeCIFAR10:  # stands in for torchvision.datasets.CIFAR10
        def __init__(self, root, train, download):
            write_fake_cifar(tmp_path / "cifar-10-batches-py")

    monkeypatch.setitem(sys.modules, "torchvision.datasets", types.SimpleNamespace(CIFAR10=FakeCIFAR10))
    assert len(CIFAR10(tmp_path, download=True)) == 20


def test_cifar10_download_offline_says_what_to_do(tmp_path, monkeypatch):
    from urllib.error import URLError

    class Offline:  # torchvision's download raised urllib's bare 'Name or service not known'
        def __init__(self, root, train, download):
            raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setitem(sys.modules, "torchvision.datasets", types.SimpleNamespace(CIFAR10=Offline))
    with pytest.raises(OSError, match=r"root: downloading CIFAR-10 into .* failed .*; without a network, put "
                                      r"cifar-10-batches-py"):
        CIFAR10(tmp_path, download=True)


# --- ImageFolder
def _save(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@needs_pillow
def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    pictures = {name: rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
                for name in ["loose.png", "cats/a.png", "cats/deep/b.PNG", "dogs/c.png"]}
    for name, array in pictures.items():
        _save(tmp_path / name, array)
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    data = ImageFolder(tmp_path)
    assert data.classes == ["cats", "dogs"] and len(data) == 4
    names = [p.relative_to(tmp_path).as_posix() for p in data.paths]
    assert names == ["loose.png", "cats/a.png", "cats/deep/b.PNG", "dogs/c.png"]
    assert [data[i][1]["label"] for i in range(4)] == [-1, 0, 0, 1]
    image, _ = data[2]
    assert torch.allclose(image, torch.from_numpy(pictures["cats/deep/b.PNG"]).permute(2, 0, 1) / 255)
    resized = ImageFolder(tmp_path, size=(4, 5))
    assert resized[0][0].shape == (3, 4, 5)


@needs_pillow
def test_image_folder_grey_image_becomes_rgb(tmp_path):
    _save(tmp_path / "g.png", np.full((5, 5), 128, np.uint8))
    image, labels = ImageFolder(tmp_path)[0]
    assert image.shape == (3, 5, 5) and labels == {"label": -1}


@needs_pillow
def test_image_folder_reads_16_bit_images_at_their_depth(tmp_path):
    # PIL's convert("RGB") clipped 16-bit values to 255: a 0..65535 ramp came back white (mean
    # 0.998). 32-bit integer and float images keep PIL's 0..255 convention, refused outside it
    from PIL import Image

    (tmp_path / "c").mkdir()
    ramp = np.round(np.linspace(0, 65535, 32 * 32)).reshape(32, 32)
    Image.fromarray(ramp.astype(np.uint16)).save(tmp_path / "c" / "a.png")  # I;16
    grey = np.round(ramp / 257)
    Image.fromarray(grey.astype(np.float32)).save(tmp_path / "c" / "b.tif")  # F, 0..255
    Image.fromarray(grey.astype(np.int32)).save(tmp_path / "c" / "c.tif")  # I, 0..255
    data = ImageFolder(tmp_path)
    for i, expected in enumerate((ramp / 65535, grey / 255, grey / 255)):
        image = data[i][0]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        torch.testing.assert_close(image[0].double(), torch.from_numpy(expected), atol=1e-6, rtol=0)
    Image.fromarray(ramp.astype(np.int32)).save(tmp_path / "c" / "d.tif")  # was clipped to 255
    with pytest.raises(ValueError, match=r"d.tif: a I image with values outside 0..255"):
        ImageFolder(tmp_path)[3]


@needs_pillow
def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        ImageFolder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no images"):
        ImageFolder(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png: cannot read image"):
        ImageFolder(tmp_path)[0]
    with pytest.raises(ValueError, match="size"):
        ImageFolder(tmp_path, size=0)


@needs_pillow
def test_image_folder_refuses_an_empty_class_folder(tmp_path):
    # an empty class folder was skipped: the classes after it moved down one label, so a val
    # split lacking class b gave c the label 1 that was b's in train; a probe scored wrongly
    for split in ("train", "val"):
        for name in ("a", "b", "c"):
            (tmp_path / split / name).mkdir(parents=True)
            if not (split == "val" and name == "b"):
                _save(tmp_path / split / name / "1.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "train" / ".cache").mkdir()  # hidden folders are not classes
    assert ImageFolder(tmp_path / "train").classes == ["a", "b", "c"]
    with pytest.raises(FileNotFoundError, match="root: the class folders b of .*val hold no images"):
        ImageFolder(tmp_path / "val")
    # no subfolder with images: unlabelled images, whatever other folders lie beside them
    _save(tmp_path / "loose" / "1.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "loose" / "notes").mkdir()
    (tmp_path / "loose" / "notes" / "readme.txt").write_text("not an image")
    unlabelled = ImageFolder(tmp_path / "loose")
    assert unlabelled.classes == [] and len(unlabelled) == 1 and unlabelled[0][1] == {"label": -1}


# --- natural images
@pytest.mark.skipif(not (has_skimage and has_sklearn), reason="needs scikit-image and scikit-learn")
def test_natural_images():
    images = natural_images()
    assert list(images) == list(SKIMAGE_IMAGES + SKLEARN_IMAGES)
    for name, image in images.items():
        assert image.dim() == 3 and image.shape[0] == 3 and min(image.shape[1:]) >= 300, name
        assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
        assert image.std() > 0.05, name  # a photograph, not a flat field
    assert list(natural_images(["flower", "astronaut"])) == ["flower", "astronaut"]
    assert list(natural_images(np.array(["astronaut"]))) == ["astronaut"]
    with pytest.raises(ValueError, match="names: expected a non-empty list of distinct names from astronaut"):
        natural_images(["lena"])
    # an empty dataset; repeats collapsed to one image; an int, a generator and a nested list
    # failed inside the checks ("'int' object is not iterable", "unhashable type: 'list'")
    for names in ([], ["chelsea", "chelsea"], 5, (n for n in ["chelsea"]), [["chelsea"]], "chelsea"):
        with pytest.raises(ValueError, match=r"names: expected a non-empty list of distinct names"):
            NaturalImages(names=names)
    with pytest.raises(ValueError, match="size: expected an int in 1..8192, got 100000"):
        NaturalImages(size=10**5)  # 10**5 squared per photograph, before any check


@pytest.mark.skipif(not has_sklearn, reason="needs scikit-learn")
def test_natural_images_without_skimage(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.warns(UserWarning, match="without scikit-image"):
        images = natural_images()
    assert list(images) == list(SKLEARN_IMAGES)


def test_natural_images_without_either(monkeypatch):
    for name in ("skimage", "skimage.data", "sklearn", "sklearn.datasets"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match="scikit-image or scikit-learn"):
        natural_images()


@needs_embedded_digits
@pytest.mark.skipif(not (has_skimage or has_sklearn), reason="needs scikit-image or scikit-learn")
def test_natural_images_dataset_under_digits():
    photos = NaturalImages(size=48)
    assert len(photos) == len(photos.names) >= 2
    image, labels = photos[1]
    assert image.shape == (3, 48, 48) and labels == {"label": 1}
    data = DigitsOnImages(photos, unique_digits=4, seed=0)
    overlaid, labels = data[1]
    assert overlaid.shape == (3, 48, 48) and (overlaid >= image).all()
    assert set(labels) == {"label", "digit", "digit_id"}
