"""pyclr.render.masks: render_masks end to end on a small random ResNet-18, the label maps
it draws checked against the clusterings themselves; images and checkpoints; bad input."""
import json

import numpy as np
import pytest
import torch

from pyclr.cluster import bisecting, kmeans, raw_pixel_kmeans, ward
from pyclr.models import resnet18
from pyclr.render import (IMAGENET_MEAN, IMAGENET_STD, default_encoder, draw_figures, extract_features,
                          load_images, render_masks, upsample_labels)
from pyclr.render.masks import find_run_folder

cv2 = pytest.importorskip("cv2")
pytest.importorskip("sklearn")

TAPS = ("block2", "block3", "block4")


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return resnet18()


@pytest.fixture(scope="module")
def images():
    """Two 64x64 scenes: a disk on a gradient, and stripes beside a flat square."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    disk = ((y - 0.5) ** 2 + (x - 0.4) ** 2 < 0.08).float()
    first = torch.stack([0.9 * disk + 0.1 * x, 0.3 + 0.2 * y * (1 - disk), 0.8 * (1 - disk)])
    stripes = (torch.sin(x * 25) > 0).float() * (x < 0.5)
    second = torch.stack([stripes, 0.5 * (x >= 0.5) + 0.2 * stripes, 0.6 * y])
    return torch.stack([first, second]).clamp(0, 1)


@pytest.mark.parametrize("cross_image", [False, True])
def test_kmeans_masks_are_the_clusterings_upsampled(encoder, images, cross_image, tmp_path):
    result = render_masks(encoder, images, ks=(2, 3), cross_image=cross_image, out_dir=str(tmp_path),
                          names=["disk", "stripes"], n_init=2)
    features = extract_features(encoder, images, TAPS)
    mode = "cross_image" if cross_image else "per_image"
    assert list(result.labels) == list(TAPS)
    for tap in TAPS:
        for k in (2, 3):
            expected = kmeans(features[tap], k, mode=mode, n_init=2, seed=0).labels
            labels = result.labels[tap][k]
            assert labels.shape == (2, 64, 64)
            assert torch.equal(labels, upsample_labels(expected, 64))
            colours = result.colours[tap][k]
            assert colours.shape == (2, k)
            if cross_image:  # one cluster, one colour in every image
                assert torch.equal(colours[0], colours[1])
    names = ["disk", "stripes"] + ([f"batch {t}" for t in TAPS] if cross_image else [])
    assert list(result.paths) == names and list(result.figures) == names
    for name, path in result.paths.items():
        written = cv2.imread(path)
        assert written is not None and written.shape == result.figures[name].shape
        assert np.array_equal(written[..., ::-1], result.figures[name])
    suffix = "_kmeans_cross-image.png" if cross_image else "_kmeans.png"
    assert result.paths["disk"] == str(tmp_path / ("disk" + suffix))


@pytest.mark.parametrize("method", ["ward", "bisecting"])
@pytest.mark.parametrize("cross_image", [False, True])
def test_ward_and_bisecting_masks(encoder, images, method, cross_image):
    result = render_masks(encoder, images, taps=("block3",), ks=(2, 3), method=method,
                          cross_image=cross_image, seed=1)
    features = extract_features(encoder, images, ("block3",))["block3"]
    points = features.reshape(-1, features.shape[-1]) if cross_image else features
    for k in (2, 3):
        run = ward(points, k) if method == "ward" else bisecting(points, k, seed=1)
        expected = run.labels.reshape(features.shape[:-1])
        assert torch.equal(result.labels["block3"][k], upsample_labels(expected, 64))
    assert not result.paths and set(result.figures) >= {"image0", "image1"}


def test_several_methods_raw_pixels_and_bilinear(encoder, images):
    result = render_masks(encoder, images, taps=("block4",), ks=(2, 3), method=["kmeans", "ward"],
                          raw_pixel_baseline=True, upsample="bilinear", n_init=1)
    assert list(result.labels) == ["block4 kmeans", "block4 ward", "raw pixels"]
    for b in range(2):  # block4 of a 64x64 image is 2x2: the raw pixels are downsampled to it
        raw = raw_pixel_kmeans(images[b], (2, 2), 3, seed=b, n_init=1).labels
        assert torch.equal(result.labels["raw pixels"][3][b], upsample_labels(raw[None], 64, "bilinear", k=3)[0])
    figure = result.figures["image0"]
    assert figure.shape[0] > 3 * 64 and figure.shape[1] > 2 * 64  # three rows, two columns


def test_extract_features_normalises_and_restores_the_mode(encoder, images):
    encoder.train()
    features = extract_features(encoder, images, ("block4",))
    assert encoder.training
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    encoder.eval()
    with torch.no_grad():
        raw = encoder.features((images - mean) / std, ("block4",))["block4"]
    encoder.train()
    expected = torch.nn.functional.normalize(raw, dim=1).permute(0, 2, 3, 1)
    assert torch.allclose(features["block4"], expected, atol=1e-6)
    plain = extract_features(encoder, images, ("block4",), normalize=False)["block4"]
    assert not torch.allclose(plain, features["block4"])


def test_load_images_crops_the_centre_square(tmp_path):
    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[:, 20:60] = (200, 100, 50)                      # RGB of the centre square
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), image[..., ::-1])
    loaded = load_images([str(path)], size=20)
    assert loaded.shape == (1, 3, 20, 20) and loaded.dtype == torch.float32
    assert torch.allclose(loaded[0, :, 10, 10], torch.tensor([200, 100, 50]) / 255, atol=1e-6)
    assert torch.allclose(loaded[0].amin((1, 2)), loaded[0].amax((1, 2)))  # the black sides are cut


def test_default_encoder_is_seeded_and_leaves_the_global_rng_alone(capsys):
    state = torch.random.get_rng_state()
    first, second = default_encoder(seed=3), default_encoder(seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert first.arch == "resnet50"
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert "randomly initialised ResNet-50" in capsys.readouterr().err


def test_torchvision_layout_checkpoint(tmp_path):
    pytest.importorskip("pyclr.train.checkpoint", exc_type=ImportError)
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.models.resnet18(num_classes=10)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in reference.state_dict().items()}}, path)
    encoder = default_encoder(str(path))
    assert encoder.arch == "resnet18" and encoder.width == 1
    assert torch.equal(encoder.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)


def test_run_folder_checkpoint(tmp_path):
    pytest.importorskip("pyclr.train.checkpoint", exc_type=ImportError)
    torch.manual_seed(1)
    trained = resnet18(cifar_stem=True)
    (tmp_path / "config.json").write_text(json.dumps({"encoder": {"name": "resnet18", "cifar_stem": True}}))
    torch.save({"encoder": trained.state_dict(), "step": 5}, tmp_path / "checkpoint.pt")
    for path in (tmp_path, tmp_path / "checkpoint.pt"):
        assert find_run_folder(str(path)) == str(tmp_path)
        encoder = default_encoder(str(path))
        assert torch.equal(encoder.conv1.weight, trained.conv1.weight)
    (tmp_path / "config.json").unlink()
    with pytest.raises(ValueError, match="pyclr training checkpoint; pass its run folder"):
        default_encoder(str(tmp_path / "checkpoint.pt"))


@pytest.mark.parametrize("kwargs,message", [
    (dict(taps=("block9",)), "taps: expected names among"),
    (dict(method="spectral"), "method: expected one of"),
    (dict(ks=(2, 0)), r"ks: expected an int >= 1, got 0"),
    (dict(ks=(2, 2)), r"ks: expected distinct ints >= 1"),
    (dict(ks=(2, 5)), r"k: expected an int with 1 <= k <= 4"),  # block4 is 2x2
    (dict(names=["a"]), "names: expected 2 non-empty strings"),
    (dict(upsample="cubic"), "upsample: expected one of"),
])
def test_render_masks_bad_input(encoder, images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        render_masks(encoder, images, **{"ks": (2,), "n_init": 1, **kwargs})


@pytest.mark.parametrize("option", ["cross_image", "raw_pixel_baseline", "normalize"])
def test_render_masks_flags_must_be_bools(encoder, images, option):
    with pytest.raises(TypeError, match=f"{option}: expected a bool, got 'no'"):
        render_masks(encoder, images, ks=(2,), n_init=1, **{option: "no"})  # "no" was truthy: yes


def test_square_image_takes_uint8_and_checks_its_input():
    from pyclr.render import square_image

    image = torch.randint(0, 256, (3, 10, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    # uint8 was resized as 0..255 and clamped to [0, 1]: a binary image
    assert torch.allclose(square_image(image, 8), square_image(image.float() / 255, 8))
    with pytest.raises(ValueError, match=r"image: expected a \(3, H, W\) tensor, got Tensor of shape \(10, 20, 3\)"):
        square_image(image.permute(1, 2, 0), 8)  # HWC was read as 10 channels
    with pytest.raises(TypeError, match="image: expected uint8 or floating point, got torch.int64"):
        square_image(image.long(), 8)
    for bad in (float("nan"), float("inf")):  # NaN passed the clamp, inf spread NaN in the resize
        with pytest.raises(ValueError, match="image: expected finite values, got NaN or inf"):
            square_image(torch.full((3, 10, 20), bad), 8)


def test_square_image_in_half_precision_and_always_clamped():
    from pyclr.render import square_image

    with pytest.raises(ValueError, match=r"size: expected at most 4096 pixels a side, got \(9000, 9000\)"):
        square_image(torch.rand(3, 8, 8), (9000, 9000))  # named check_size's 8192

    image = torch.rand(3, 10, 20, generator=torch.Generator().manual_seed(0))
    for dtype in (torch.float16, torch.bfloat16):  # antialiased resizing raised NotImplementedError
        out = square_image(image.to(dtype), 8)
        assert out.dtype == torch.float32 and torch.allclose(out, square_image(image.to(dtype).float(), 8))
    assert square_image(image * 5, 10).max() == 1  # the path without resizing returned up to 5


def test_image_names_are_distinct():
    from pyclr.render.masks import image_names

    assert image_names(["x-1.png", "a/x.png", "b/x.png"]) == ["x-1", "x-2", "x-3"]  # was x-1, x-1, x-2
    assert image_names(["a/x.png", "b/x.png", "c.png"]) == ["x-0", "x-1", "c"]
    with pytest.raises(TypeError, match="paths: expected a sequence of file paths, got 'abc.png'"):
        image_names("abc.png")  # was ['a', 'b', 'c', 'image', 'p', 'n']


def test_a_seed_too_large_for_every_image_is_refused_first(encoder, images, monkeypatch):
    # image b is seeded with seed + b: the last image's seed failed after all the clustering
    import pyclr.render.masks as masks

    monkeypatch.setattr(masks, "extract_features", lambda *a, **k: pytest.fail("ran before the check"))
    with pytest.raises(ValueError, match=r"seed: expected an int in 0\.\.2\*\*31-2, got 2147483647"):
        render_masks(encoder, images, ks=(2,), seed=2**31 - 1, raw_pixel_baseline=True)

    class Reached(Exception):
        pass

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(masks, "extract_features", reached)
    with pytest.raises(Reached):  # cross-image clustering takes the seed alone: the largest is valid
        render_masks(encoder, images, ks=(2,), seed=2**31 - 1, cross_image=True)


def test_images_and_label_maps_of_mismatched_batch(images):
    maps = {"block3": {2: torch.zeros(3, 4, 4, dtype=torch.int64)}}
    expected = r"label_maps\['block3'\]\[2\]: expected 2 label maps \(one per image\), got 3"
    with pytest.raises(ValueError, match=expected):
        draw_figures(images, maps)
    with pytest.raises(ValueError, match=r"label_maps\['raw'\]: expected the columns \[2\]"):
        draw_figures(images, {**{"block3": {2: torch.zeros(2, 4, 4, dtype=torch.int64)}},
                              "raw": {3: torch.zeros(2, 4, 4, dtype=torch.int64)}})


def test_label_maps_beyond_the_palette_are_refused_before_upsampling(images, monkeypatch):
    # the palette's limit was checked after the label maps were upsampled (3.7 GB for 1e5)
    import pyclr.render.masks as masks

    monkeypatch.setattr(masks, "upsample_labels", lambda *a, **k: pytest.fail("upsampled before the check"))
    with pytest.raises(ValueError, match=r"label_maps\['r'\]\[2\]: expected values below 4096, got 100000"):
        draw_figures(images, {"r": {2: torch.full((2, 4, 4), 100000)}}, upsample="bilinear")


def test_bad_images(encoder, images, tmp_path):
    with pytest.raises(ValueError, match=r"images: expected values in \[0, 1\]"):
        render_masks(encoder, images * 2 - 1, ks=(2,))
    with pytest.raises(ValueError, match=r"images: expected a \(B, 3, H, W\) tensor"):
        render_masks(encoder, images[0], ks=(2,))
    with pytest.raises(TypeError, match="encoder: expected a pyclr encoder"):
        render_masks(torch.nn.Linear(2, 2), images, ks=(2,))
    missing = tmp_path / "missing.jpg"
    with pytest.raises(ValueError, match="image: cannot read '.*missing.jpg'"):
        load_images([str(missing)])
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not a picture")
    with pytest.raises(ValueError, match="image: cannot read '.*notes.png'"):
        load_images([str(not_an_image)])
    with pytest.raises(ValueError, match="checkpoint: .* does not exist"):
        default_encoder(str(missing))
