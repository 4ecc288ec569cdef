"""Batched augmentations (pyclr.data.augment): parameter ranges, exactness of each op against
torchvision's per-image kernels, the whole policy against a per-image torchvision pipeline
fed the same draws, channel handling, determinism, and argument errors."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from pyclr.data import augment as A

from ..conftest import DEVICES


def images(b, c, h, w, seed=0, device="cpu", dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, h, w, generator=gen, dtype=torch.float64).to(device, dtype)


def gen(seed, device="cpu"):
    return torch.Generator(device=device).manual_seed(seed)


def tvf():
    return pytest.importorskip("torchvision.transforms.v2.functional")


OFF = dict(crop=False, flip_p=0.0, jitter_strength=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)


# ----------------------------------------------------------------------------- shapes, dtypes

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("policy", ["simclr_imagenet", "simclr_cifar", "none", "sprites_crop+jitter"])
def test_policy_keeps_dtype_device_and_range(device, dtype, policy):
    x = images(6, 3, 20, 24, device=device, dtype=dtype)
    out = A.SimCLRAugment.from_policy(policy, size=(16, 12))(x, gen(0))
    assert out.shape == (6, 3, 16, 12) and out.dtype == dtype and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()


def test_uint8_input_is_read_as_float_in_unit_range():
    x = (images(4, 3, 16, 16) * 255).round().to(torch.uint8)
    aug = A.SimCLRAugment()
    out = aug(x, gen(3))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, aug(x.float() / 255, gen(3)), rtol=0, atol=1e-6)
    for crop in (lambda v: A.crop_without_resize(v, 10, gen(1)), lambda v: A.random_bits_crop(v, gen(1))):
        torch.testing.assert_close(crop(x), crop(x.float() / 255), rtol=0, atol=1e-6)


def test_policies_switch_parts_off():
    x = images(6, 3, 16, 16)
    assert torch.equal(A.SimCLRAugment.from_policy("sprites_none")(x, gen(0)), x)
    jitter_only = A.SimCLRAugment.from_policy("sprites_jitter")
    assert (jitter_only.jitter_strength, jitter_only.crop, jitter_only.flip_p) == (0.5, False, 0.0)
    crop_only = A.SimCLRAugment.from_policy("sprites_crop", flip_p=0.0)  # overrides apply
    assert (crop_only.crop, crop_only.flip_p, crop_only.jitter_p, crop_only.grayscale_p) == (True, 0, 0, 0)
    assert A.SimCLRAugment.from_policy("simclr_cifar").blur_p == 0
    assert A.SimCLRAugment.from_policy("simclr_imagenet").blur_p == 0.5


def test_empty_batch():
    assert A.SimCLRAugment()(torch.rand(0, 3, 8, 8), gen(0)).shape == (0, 3, 8, 8)


def test_gaussian_blur_of_an_empty_batch(monkeypatch):
    # conv2d refused the (1, 0, H, W) batch the grouped blur made of it
    assert A.gaussian_blur(torch.rand(0, 3, 16, 16), 1.0).shape == (0, 3, 16, 16)
    monkeypatch.setattr(A, "_any", lambda mask: True)  # the GPU's way: no step is skipped
    assert A.SimCLRAugment(blur_p=1.0)(torch.rand(0, 3, 8, 8), gen(0)).shape == (0, 3, 8, 8)


# ----------------------------------------------------------------------------- geometry

@pytest.mark.parametrize("device", DEVICES)
def test_whole_image_crop_without_flip_is_the_resized_input(device):
    x = images(5, 3, 24, 24, device=device)
    full = dict(OFF, crop=True, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
    out = A.SimCLRAugment(**full)(x, gen(1))
    torch.testing.assert_close(out, x, rtol=0, atol=1e-5)
    out = A.SimCLRAugment(size=40, **full)(x, gen(1))
    resized = F.interpolate(x, size=(40, 40), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, resized, rtol=0, atol=1e-5)
    assert torch.equal(A.SimCLRAugment(**OFF)(x, gen(1)), x)  # no crop: no resampling at all


@pytest.mark.parametrize("device", DEVICES)
def test_flip_with_probability_one_mirrors_exactly(device):
    x = images(5, 4, 9, 13, device=device)
    assert torch.equal(A.SimCLRAugment(**dict(OFF, flip_p=1.0))(x, gen(0)), x.flip(-1))
    full = dict(OFF, crop=True, crop_scale=(1.0, 1.0), crop_ratio=(13 / 9, 13 / 9), flip_p=1.0)
    torch.testing.assert_close(A.SimCLRAugment(**full)(x, gen(0)), x.flip(-1), rtol=0, atol=1e-5)


def test_resized_crop_matches_torchvision_per_image():
    tv = tvf()
    x = images(16, 3, 30, 41, seed=1)
    boxes = A.sample_crop_boxes(16, 30, 41, generator=gen(2))
    flip = torch.arange(16) % 2 == 0
    out = A.resized_crop(x, boxes, (24, 20), flip)
    for b in range(16):
        ref = tv.resized_crop(x[b], *boxes[b].tolist(), [24, 20], antialias=False)
        ref = tv.horizontal_flip(ref) if flip[b] else ref
        torch.testing.assert_close(out[b], ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("height,width,scale,ratio", [
    (1000, 1000, (0.08, 1.0), (3 / 4, 4 / 3)),
    (600, 1000, (0.5, 1.0), (3 / 4, 4 / 3)),
    (1000, 1000, (0.2, 0.3), (0.5, 2.0)),
])
def test_crop_boxes_cover_their_ranges(height, width, scale, ratio):
    boxes = A.sample_crop_boxes(4000, height, width, scale, ratio, generator=gen(0))
    top, left, h, w = boxes.double().unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= height).all() and (left + w <= width).all()
    # At this size the rounding of w and h moves the area and the aspect by under 1%.
    area, aspect = h * w / (height * width), w / h
    assert area.min() >= scale[0] * 0.99 and area.max() <= scale[1] * 1.01
    assert aspect.min() >= ratio[0] * 0.99 and aspect.max() <= ratio[1] * 1.01
    # Draws reach both ends of both ranges (not a fixed or a central box). The largest box
    # that fits has the allowed aspect closest to the image's.
    r = min(max(width / height, ratio[0]), ratio[1])
    reach = min(scale[1], min(width, height * r) * min(height, width / r) / (height * width))
    assert area.min() < scale[0] + 0.02 * (scale[1] - scale[0])
    assert area.max() > reach - 0.05 * (reach - scale[0])
    # The smallest box reaches the aspects whose sides fit: h = sqrt(area / r) <= height, ...
    low_area = scale[0] * height * width
    r_low, r_high = max(ratio[0], low_area / height ** 2), min(ratio[1], width ** 2 / low_area)
    assert aspect.min() < r_low * 1.05 and aspect.max() > r_high / 1.05
    # The position is uniform over where the box fits: its relative offset averages 1/2.
    for start, slack in ((top, height - h), (left, width - w)):
        room = slack > 0
        assert abs((start[room] / slack[room]).mean().item() - 0.5) < 0.03


def test_crop_boxes_fall_back_to_a_central_crop():
    # An aspect of 2-3 never fits a square at full area: torchvision's central crop of the
    # whole width and height round(width / 2).
    boxes = A.sample_crop_boxes(20, 30, 30, (1.0, 1.0), (2.0, 3.0), generator=gen(0))
    assert (boxes == torch.tensor([(30 - 15) // 2, 0, 15, 30])).all()


@pytest.mark.parametrize("ratio", [(40.0, 40.0), (1 / 40, 1 / 40), (1e40, 1e40), (1e-40, 1e-40)])
def test_extreme_aspects_give_boxes_of_a_pixel_at_least(ratio):
    # torchvision's central fallback rounds 16 / 40 to a height of 0
    top, left, h, w = A.sample_crop_boxes(3, 16, 16, (1.0, 1.0), ratio, generator=gen(0)).unbind(1)
    assert (h >= 1).all() and (w >= 1).all() and (top + h <= 16).all() and (left + w <= 16).all()
    out = A.SimCLRAugment(8, crop_ratio=ratio)(images(3, 3, 16, 16), gen(0))
    assert out.shape == (3, 3, 8, 8) and torch.isfinite(out).all()


def test_sample_crop_boxes_checks_scale_as_the_policy_does():
    with pytest.raises(ValueError, match=r"scale: expected area fractions in \(0, 1\], got \(2, 3\)"):
        A.sample_crop_boxes(2, 16, 16, scale=(2, 3))
    with pytest.raises(ValueError, match=r"crop_scale: expected area fractions in \(0, 1\]"):
        A.SimCLRAugment(crop_scale=(2, 3))


def test_crop_without_resize_takes_every_position_uniformly():
    x = images(1, 2, 38, 38).expand(3000, -1, -1, -1)
    out = A.crop_without_resize(x, 28, generator=gen(0))
    assert out.shape == (3000, 2, 28, 28)
    # Random pixel values are distinct: an output's top-left pixel says where it was cut.
    match = out[:, 0, 0, 0].view(-1, 1) == x[0, 0, :11, :11].reshape(1, -1)
    assert (match.sum(dim=1) == 1).all()
    position = match.int().argmax(dim=1)
    windows = x[0].unfold(1, 28, 1).unfold(2, 28, 1).permute(1, 2, 0, 3, 4).reshape(121, 2, 28, 28)
    assert torch.equal(out, windows[position])  # each output is exactly that window
    counts = torch.bincount(position, minlength=121).double()
    assert (counts > 0).all()  # all 121 positions, corners included
    assert counts.std() < 1.5 * math.sqrt(3000 / 121)  # uniform, up to binomial noise


def test_random_bits_crop_is_the_resized_crop_of_its_boxes_and_keeps_bits():
    x = images(64, 1, 28, 28)
    bits = (torch.arange(64 * 3).view(64, 3, 1, 1) % 2).float().expand(-1, -1, 28, 28)
    x = torch.cat((x, bits), dim=1)
    out = A.random_bits_crop(x, gen(5))
    boxes = A.sample_crop_boxes(64, 28, 28, (0.5, 1.0), (3 / 4, 4 / 3), generator=gen(5))
    area = boxes[:, 2] * boxes[:, 3] / 28 ** 2
    assert area.min() > 0.45 and area.max() <= 1  # 0.5-1 up to rounding on a 28-px grid
    assert torch.equal(out[:, :1], A.resized_crop(x[:, :1], boxes, 28))
    # Constant planes stay exactly constant, so two views agree on them (a plane of ones came
    # out 0.99999994 in places, and two views differed by 6e-8).
    assert torch.equal(out[:, 1:], bits)
    assert torch.equal(A.random_bits_crop(x, gen(6))[:, 1:], out[:, 1:])
    as_bytes = (x * 255).round().to(torch.uint8)
    assert torch.equal(A.random_bits_crop(as_bytes, gen(5))[:, 1:], bits)
    assert A.random_bits_crop(torch.rand(0, 3, 8, 8), gen(5)).shape == (0, 3, 8, 8)


# ----------------------------------------------------------------------------- colour ops

@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("op,values", [
    ("adjust_brightness", [0.0, 0.35, 1.0, 1.8]),
    ("adjust_contrast", [0.0, 0.35, 1.0, 1.8]),
    ("adjust_saturation", [0.0, 0.35, 1.0, 1.8]),
    ("adjust_hue", [-0.5, -0.2, 0.0, 0.13, 0.5]),
])
def test_colour_ops_match_torchvision(op, values, channels):
    tv = tvf()
    x = images(1, channels, 17, 23, seed=2)
    x[..., 0, :4] = 0.5  # grey pixels and ties between channels
    for value in values:
        torch.testing.assert_close(getattr(A, op)(x, value), getattr(tv, op)(x, value), rtol=0, atol=1e-5)


def test_per_sample_factors_equal_one_call_per_sample():
    x = images(4, 3, 8, 8, seed=3)
    factors = torch.tensor([0.2, 0.9, 1.3, 1.7])
    for op in ("adjust_brightness", "adjust_contrast", "adjust_saturation"):
        out = getattr(A, op)(x, factors)
        for b in range(4):
            torch.testing.assert_close(out[b:b + 1], getattr(A, op)(x[b:b + 1], factors[b].item()))
    shifts = torch.tensor([-0.4, -0.1, 0.2, 0.5])
    out = A.adjust_hue(x, shifts)
    for b in range(4):
        torch.testing.assert_close(out[b:b + 1], A.adjust_hue(x[b:b + 1], shifts[b].item()))


def test_grayscale_and_blur_match_torchvision():
    tv = tvf()
    x = images(3, 3, 21, 26, seed=4)
    torch.testing.assert_close(A.rgb_to_grayscale(x), tv.rgb_to_grayscale(x, 3), rtol=0, atol=1e-6)
    sigma = torch.tensor([0.1, 0.8, 2.0])
    out = A.gaussian_blur(x, sigma, kernel_size=7)
    for b in range(3):
        ref = tv.gaussian_blur(x[b], [7, 7], [sigma[b].item()] * 2)
        torch.testing.assert_close(out[b], ref, rtol=0, atol=1e-5)
    assert torch.equal(A.gaussian_blur(x, 0.0, 7), x)  # sigma 0 is an exact no-op


@pytest.mark.parametrize("op,dtype", [("adjust_brightness", torch.float32), ("adjust_contrast", torch.float32),
                                      ("adjust_saturation", torch.float16), ("adjust_brightness", torch.uint8)])
def test_colour_factors_past_the_compute_dtype_are_refused(op, dtype):
    # 1e39 became inf in float32 (half and uint8 images compute in it): 0 * inf gave NaN
    x = images(2, 3, 4, 4)
    x[0] = 0
    x = (x * 255).round().to(dtype) if dtype == torch.uint8 else x.to(dtype)
    message = r"factor: expected at most 3.4028234663852886e\+38, the largest torch.float32"
    with pytest.raises(ValueError, match=message + r".*got 1e\+39"):
        getattr(A, op)(x, 1e39)
    with pytest.raises(ValueError, match=message):
        getattr(A, op)(x, torch.tensor([1.0, 1e39], dtype=torch.float64))
    out = getattr(A, op)(x, torch.finfo(torch.float32).max)  # the largest that fits is fine
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert torch.equal(A.adjust_brightness(x.double(), 1e39)[0], torch.zeros(3, 4, 4, dtype=torch.float64))


# ----------------------------------------------------------------------------- the policy's draws

def test_sampled_parameters_cover_their_ranges():
    aug = A.SimCLRAugment(jitter_strength=1.0)
    n = 20000
    p = aug.sample_params(n, 32, 32, gen(0))
    for i, (low, high) in enumerate(aug.jitter_ranges()):
        f = p.factors[:, i]
        assert f.min() >= low and f.max() <= high
        assert f.min() < low + 0.01 * (high - low) and f.max() > high - 0.01 * (high - low)
    assert aug.jitter_ranges()[0] == (pytest.approx(0.2), pytest.approx(1.8))
    assert aug.jitter_ranges()[3] == (pytest.approx(-0.2), pytest.approx(0.2))
    # Bernoulli draws at their probabilities, to within 5 standard deviations.
    for mask, prob in ((p.flip, 0.5), (p.jitter, 0.8), (p.grayscale, 0.2), (p.sigma > 0, 0.5)):
        assert abs(mask.double().mean().item() - prob) < 5 * math.sqrt(prob * (1 - prob) / n)
    blurred = p.sigma[p.sigma > 0]
    assert blurred.min() >= 0.1 and blurred.max() <= 2.0
    assert blurred.min() < 0.12 and blurred.max() > 1.98
    # The jitter order is a permutation per sample, and all 24 orders occur about equally.
    assert (p.order.sort(dim=1).values == torch.arange(4)).all()
    codes = (p.order * torch.tensor([64, 16, 4, 1])).sum(1)
    counts = torch.bincount(codes).double()
    counts = counts[counts > 0]
    assert len(counts) == 24 and counts.min() > n / 24 * 0.8


def test_switched_off_parts_draw_no_effect():
    p = A.SimCLRAugment(**OFF).sample_params(500, 16, 20, gen(0))
    assert (p.box == torch.tensor([0, 0, 16, 20])).all()
    assert not p.flip.any() and not p.jitter.any() and not p.grayscale.any() and not (p.sigma > 0).any()
    assert (p.factors[:, :3] == 1).all() and (p.factors[:, 3] == 0).all()


def test_brightness_factor_recovered_from_constant_images():
    # On a constant grey image contrast, saturation and hue change nothing, so the output
    # over the input is the brightness factor, whatever the order. Nearly nothing: the luma
    # weights sum to 0.9999 (torchvision's), so each of the two blends may move it by 1e-4.
    aug = A.SimCLRAugment(**dict(OFF, jitter_strength=1.0, jitter_p=1.0))
    x = torch.full((2000, 3, 4, 4), 0.25)
    out = aug(x, gen(7))
    factor = out[:, 0, 0, 0] / 0.25
    assert (out == out[:, :1, :1, :1]).all()
    assert factor.min() >= 0.2 - 1e-6 and factor.max() <= 1.8 + 1e-6
    assert factor.min() < 0.25 and factor.max() > 1.75
    expected = aug.sample_params(2000, 4, 4, gen(7)).factors[:, 0].float()
    torch.testing.assert_close(factor, expected, rtol=2e-4, atol=0)


def test_grayscale_with_probability_one_gives_equal_channels():
    out = A.SimCLRAugment(**dict(OFF, grayscale_p=1.0))(images(8, 3, 12, 12), gen(0))
    assert (out == out[:, :1]).all()


def torchvision_pipeline(x, params, aug):
    """The policy one image at a time with torchvision's kernels and the same draws."""
    tv = tvf()
    size = list(aug.size or x.shape[2:])
    ops = (tv.adjust_brightness, tv.adjust_contrast, tv.adjust_saturation, tv.adjust_hue)
    out = []
    for b in range(x.shape[0]):
        img = tv.resized_crop(x[b], *params.box[b].tolist(), size, antialias=False)
        img = tv.horizontal_flip(img) if params.flip[b] else img
        if params.jitter[b]:
            for op in params.order[b].tolist():
                img = ops[op](img, params.factors[b, op].item())
        if params.grayscale[b] and img.shape[0] == 3:
            img = tv.rgb_to_grayscale(img, 3)
        if params.sigma[b] > 0:
            k = A.blur_kernel_size(*size)
            img = tv.gaussian_blur(img, [k, k], [params.sigma[b].item()] * 2)
        out.append(img)
    return torch.stack(out)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("policy,size", [("simclr_imagenet", (40, 40)), ("simclr_cifar", (32, 32)),
                                         ("sprites_jitter", None)])
def test_policy_matches_torchvision_pipeline(policy, size, channels, monkeypatch):
    aug = A.SimCLRAugment.from_policy(policy, size, grayscale_p=0.3 if channels == 3 else 0.0)
    x = images(48, channels, 40, 40, seed=8)
    params = aug.sample_params(48, 40, 40, gen(9))
    # CPU batches run in cache-sized slices: make it 7 slices of 7 and one of 6 here.
    monkeypatch.setattr(A, "CPU_CHUNK_ELEMENTS", 7 * channels * 40 * 40)
    assert params.jitter.any() and not params.jitter.all()
    # Rounding compounds over up to seven ops (factors up to 1.8 amplify it): 1e-4, not 1e-5.
    torch.testing.assert_close(aug.apply_params(x, params), torchvision_pipeline(x, params, aug),
                               rtol=0, atol=1e-4)


def test_cpu_shortcuts_change_nothing(monkeypatch):
    # The CPU runs in slices and skips steps no sample in a slice needs; a GPU does neither.
    # Both ways must agree (this also runs the GPU's way where there is no GPU).
    aug = A.SimCLRAugment(size=24, image_channels=3)
    x = images(50, 4, 24, 24, seed=10)
    monkeypatch.setattr(A, "CPU_CHUNK_ELEMENTS", 3 * 4 * 24 * 24)  # 16 slices of 3, one of 2
    sliced = aug(x, gen(1))
    monkeypatch.setattr(A, "CPU_CHUNK_ELEMENTS", 1 << 30)
    monkeypatch.setattr(A, "_any", lambda mask: True)
    torch.testing.assert_close(aug(x, gen(1)), sliced, rtol=0, atol=1e-6)


def test_samples_get_independent_draws():
    aug = A.SimCLRAugment()
    x = images(1, 3, 16, 16).expand(64, -1, -1, -1)
    out = aug(x, gen(0)).reshape(64, -1)
    distinct = torch.cdist(out, out) + torch.eye(64)
    assert distinct.min() > 0  # no two samples of the same image come out equal
    p = aug.sample_params(64, 16, 16, gen(0))
    assert len(torch.unique(p.factors[:, 0])) == 64 and len(torch.unique(p.box, dim=0)) > 32


# ----------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_same_output_different_seed_different(device):
    aug = A.SimCLRAugment()
    x = images(16, 3, 24, 24, device=device)
    assert torch.equal(aug(x, gen(11, device)), aug(x, gen(11, device)))
    assert not torch.equal(aug(x, gen(11, device)), aug(x, gen(12, device)))
    v1, v2 = aug.two_views(x, gen(3, device))
    w1, w2 = aug.two_views(x, gen(3, device))
    assert torch.equal(v1, w1) and torch.equal(v2, w2) and not torch.equal(v1, v2)
    torch.manual_seed(4)
    a = aug(x)
    torch.manual_seed(4)
    assert torch.equal(a, aug(x))  # without a generator: torch's default CPU generator


@pytest.mark.parametrize("device", DEVICES)
def test_cpu_generator_gives_the_same_augmentation_on_any_device(device, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # compare blurs at fp32
    aug = A.SimCLRAugment()
    x = images(16, 3, 24, 24)
    on_device = aug(x.to(device), gen(5)).cpu()
    torch.testing.assert_close(on_device, aug(x, gen(5)), rtol=0, atol=1e-5)


def test_functional_crops_are_deterministic():
    x = images(8, 3, 38, 38)
    assert torch.equal(A.crop_without_resize(x, 28, gen(1)), A.crop_without_resize(x, 28, gen(1)))
    assert not torch.equal(A.crop_without_resize(x, 28, gen(1)), A.crop_without_resize(x, 28, gen(2)))
    assert torch.equal(A.random_bits_crop(x, gen(1)), A.random_bits_crop(x, gen(1)))
    assert not torch.equal(A.random_bits_crop(x, gen(1)), A.random_bits_crop(x, gen(2)))


# ----------------------------------------------------------------------------- extra channels

@pytest.mark.parametrize("device", DEVICES)
def test_extra_channels_are_cropped_and_flipped_but_not_coloured(device):
    aug = A.SimCLRAugment(size=20, image_channels=3, jitter_p=1.0, grayscale_p=0.5, blur_p=0.5)
    x = images(12, 5, 28, 28, device=device)
    params = aug.sample_params(12, 28, 28, gen(6))
    out = aug.apply_params(x, params)
    geometric = A.resized_crop(x[:, 3:], params.box, 20, params.flip)
    torch.testing.assert_close(out[:, 3:], geometric, rtol=0, atol=1e-6)
    torch.testing.assert_close(out[:, :3], aug.apply_params(x[:, :3], params), rtol=0, atol=1e-6)


def test_grey_image_with_bit_planes():
    # MNIST with random bits: channel 0 is the image (brightness and contrast only), the rest
    # are geometric only; a 3-channel batch of that kind must say so.
    aug = A.SimCLRAugment(image_channels=1, jitter_p=1.0)
    x = images(10, 3, 16, 16)
    params = aug.sample_params(10, 16, 16, gen(2))
    out = aug.apply_params(x, params)
    torch.testing.assert_close(out[:, :1], aug.apply_params(x[:, :1], params), rtol=0, atol=1e-6)
    torch.testing.assert_close(out[:, 1:], A.resized_crop(x[:, 1:], params.box, 16, params.flip),
                               rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="x: has 5 channels; pass image_channels=1 or 3"):
        A.SimCLRAugment()(images(2, 5, 8, 8))
    assert A.SimCLRAugment.from_policy("sprites_crop")(images(2, 5, 8, 8)).shape == (2, 5, 8, 8)


# ----------------------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("kwargs,error,message", [
    (dict(size=0), ValueError, "size: expected sizes >= 1"),
    (dict(size="32"), TypeError, r"size: expected an int or an \(H, W\) pair"),
    (dict(crop=1), TypeError, "crop: expected a bool"),
    (dict(crop_scale=(0.5, 0.2)), ValueError, "crop_scale: expected 0 < low <= high"),
    (dict(crop_scale=(0.5, 1.5)), ValueError, "crop_scale: expected area fractions in"),
    (dict(crop_ratio=0.5), TypeError, "crop_ratio: expected a pair"),
    (dict(flip_p=1.5), ValueError, r"flip_p: expected a finite number in \[0, 1\], got 1.5"),
    (dict(jitter_p=-0.1), ValueError, r"jitter_p: expected a finite number in \[0, 1\]"),
    (dict(jitter_strength=3.0), ValueError, "jitter_strength: expected at most 2.5"),
    (dict(grayscale_p=float("nan")), ValueError, "grayscale_p"),
    (dict(blur_sigma=(0.0, 1.0)), ValueError, "blur_sigma: expected 0 < low <= high"),
    (dict(blur_kernel=4), ValueError, "blur_kernel: expected an odd int"),
    (dict(image_channels=2), ValueError, "image_channels: expected one of 1, 3"),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        A.SimCLRAugment(**kwargs)


def test_bad_inputs():
    aug = A.SimCLRAugment()
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        aug([[0.5]])
    with pytest.raises(ValueError, match=r"x: expected a 4-D batch \(B, C, H, W\), got shape \(3, 8, 8\)"):
        aug(torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match="x: expected a floating-point or uint8 tensor, got torch.int32"):
        aug(torch.zeros(1, 3, 8, 8, dtype=torch.int32))
    with pytest.raises(TypeError, match="generator: expected a torch.Generator"):
        aug(torch.rand(1, 3, 8, 8), generator=0)
    with pytest.raises(ValueError, match="params: expected AugmentParams for a batch of 2"):
        aug.apply_params(torch.rand(2, 3, 8, 8), aug.sample_params(3, 8, 8))
    with pytest.raises(ValueError, match="x: has 1 channels, fewer than image_channels=3"):
        A.SimCLRAugment(image_channels=3)(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"size: expected at most the image's \(8, 8\)"):
        A.crop_without_resize(torch.rand(1, 1, 8, 8), 9)
    with pytest.raises(ValueError, match=r"shift: expected a value in \[-0.5, 0.5\]"):
        A.adjust_hue(torch.rand(1, 3, 4, 4), 0.6)
    with pytest.raises(ValueError, match="img: expected 1 \\(grey\\) or 3 \\(RGB\\) channels, got 4"):
        A.adjust_saturation(torch.rand(1, 4, 4, 4), 0.5)
    with pytest.raises(ValueError, match=r"factor: expected a number or a tensor of shape \(2,\)"):
        A.adjust_contrast(torch.rand(2, 3, 4, 4), torch.ones(3))
    with pytest.raises(ValueError, match=r"factor: expected finite values in \[0, inf\]"):
        A.adjust_brightness(torch.rand(2, 3, 4, 4), torch.tensor([float("inf"), 1.0]))  # gave NaN
    # boxes outside the image were border-padded silently; params drawn for a larger image too
    with pytest.raises(ValueError, match=r"boxes: expected \(top, left, height, width\) boxes inside the 8x8 images, "
                                         r"got \[4, 0, 5, 8\]"):
        A.resized_crop(torch.rand(2, 3, 8, 8), torch.tensor([[0, 0, 8, 8], [4, 0, 5, 8]]), 4)
    with pytest.raises(ValueError, match="boxes: expected .* got \\[0, 0, 0, 8\\]"):
        A.resized_crop(torch.rand(1, 3, 8, 8), torch.tensor([[0, 0, 0, 8]]), 4)
    with pytest.raises(ValueError, match=r"params.box: expected \(top, left, height, width\) boxes inside the 16x16"):
        aug.apply_params(torch.rand(4, 3, 16, 16), aug.sample_params(4, 64, 64, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match=r"flip: expected None or a bool tensor of shape \(1,\), got float"):
        A.resized_crop(torch.rand(1, 3, 8, 8), torch.tensor([[0, 0, 8, 8]]), 4, flip=1.0)
    with pytest.raises(ValueError, match="name: expected one of"):
        A.SimCLRAugment.from_policy("simclr")


def params_with(**changes):
    """Valid params for a batch of 2 16x16 images, with ``changes`` to their fields."""
    return dataclasses.replace(A.SimCLRAugment().sample_params(2, 16, 16, gen(0)), **changes)


@pytest.mark.parametrize("changes,error,message", [
    (dict(order=torch.tensor([[0, 1, 2, 7]] * 2)), ValueError,
     r"params.order: expected rows that are permutations of 0, 1, 2, 3, got \[0, 1, 2, 7\]"),
    (dict(order=torch.tensor([[0, 1, 1, 3]] * 2)), ValueError, r"params.order: .* got \[0, 1, 1, 3\]"),
    (dict(order=torch.tensor([[0, 1, 2, 3]] * 2, dtype=torch.int32)), TypeError,
     "params.order: expected an int64 tensor, got torch.int32"),
    (dict(box=torch.tensor([[0, 0]] * 2)), ValueError, r"params.box: expected shape \(2, 4\), got \(2, 2\)"),
    (dict(flip=torch.ones(3, dtype=torch.bool)), ValueError, r"params.flip: expected shape \(2,\), got \(3,\)"),
    (dict(grayscale=torch.ones(2)), TypeError, "params.grayscale: expected a bool tensor, got torch.float32"),
    (dict(jitter=[True, True]), TypeError, r"params.jitter: expected a bool tensor of shape \(2,\), got list"),
    (dict(sigma=torch.tensor([1.0, -1.0], dtype=torch.float64)), ValueError,
     "params.sigma: expected finite values >= 0, got -1.0"),
    (dict(sigma=torch.tensor([1.0, float("inf")])), ValueError, "params.sigma: expected finite values >= 0, got inf"),
    (dict(jitter=torch.ones(2, dtype=torch.bool), factors=torch.full((2, 4), float("nan"), dtype=torch.float64)),
     ValueError, r"params.factors: expected brightness, contrast and saturation factors in \[0, 3.40.*got \[nan"),
    (dict(factors=torch.tensor([[1.0, 1e39, 1.0, 0.0]] * 2, dtype=torch.float64)), ValueError,
     r"params.factors: .* got \[1.0, 1e\+39, 1.0, 0.0\]"),
    (dict(factors=torch.tensor([[1.0, 1.0, 1.0, 0.7]] * 2, dtype=torch.float64)), ValueError,
     r"params.factors: .*a hue shift in \[-0.5, 0.5\], got \[1.0, 1.0, 1.0, 0.7\]"),
])
def test_apply_params_checks_each_field(changes, error, message):
    with pytest.raises(error, match=message):
        A.SimCLRAugment().apply_params(images(2, 3, 16, 16), params_with(**changes))


def test_apply_params_takes_boxes_of_any_integer_type():
    # resized_crop takes any integer box, and apply_params did before its fields were checked
    params, x = params_with(), images(2, 3, 16, 16)
    expected = A.SimCLRAugment().apply_params(x, params)
    for dtype in (torch.int32, torch.int16):
        assert torch.equal(A.SimCLRAugment().apply_params(x, dataclasses.replace(params, box=params.box.to(dtype))),
                           expected)
    with pytest.raises(TypeError, match="params.box: expected an integer tensor, got torch.bool"):
        A.SimCLRAugment().apply_params(x, dataclasses.replace(params, box=params.box.bool()))


def test_apply_params_wants_augment_params():
    with pytest.raises(TypeError, match="params: expected AugmentParams, got dict"):
        A.SimCLRAugment().apply_params(images(2, 3, 16, 16), {})


@pytest.mark.parametrize("value", [float("inf"), -float("inf"), float("nan")])
@pytest.mark.parametrize("call", [
    lambda x: A.resized_crop(x, torch.tensor([[0, 0, 8, 8]] * 2), 4),
    lambda x: A.SimCLRAugment(4)(x, gen(0)),
    lambda x: A.SimCLRAugment(4).two_views(x, gen(0)),
    lambda x: A.random_bits_crop(x, gen(0)),
    lambda x: A.crop_without_resize(x, 4, gen(0)),
])
def test_non_finite_pixels_are_refused_on_the_cpu(call, value):
    # inf pixels came out NaN (0 * inf in the bilinear weights)
    x = images(2, 3, 8, 8)
    x[1, 2, 5, 3] = value
    with pytest.raises(ValueError, match="x: expected finite values, got inf or NaN"):
        call(x)
    with pytest.raises(ValueError, match="img: expected finite values, got inf or NaN"):
        A.adjust_hue(x.half(), 0.1)


def test_output_sizes_are_bounded():
    # SimCLRAugment(10**6) asked for 16 TB; the bound is check_size's (MAX_SIDE = 8192)
    with pytest.raises(ValueError, match=r"size: expected .*at most 8192 pixels"):
        A.SimCLRAugment(size=(1, 8193))
    with pytest.raises(ValueError, match=r"size: expected .*at most 8192 pixels"):
        A.resized_crop(images(1, 1, 4, 4), torch.tensor([[0, 0, 4, 4]]), (8193, 1))
    assert A.resized_crop(images(1, 1, 4, 4), torch.tensor([[0, 0, 4, 4]]), (8192, 1)).shape == (1, 1, 8192, 1)
    assert A.SimCLRAugment(size=(8192, 2)).size == (8192, 2)


def test_random_bits_crop_checks_its_generator():
    with pytest.raises(TypeError, match="generator: expected a torch.Generator or None, got int"):
        A.random_bits_crop(images(2, 3, 8, 8), 5)


def test_blur_kernel_size_and_params_index_are_checked():
    with pytest.raises(ValueError, match="height: expected an int >= 1, got -100"):
        A.blur_kernel_size(-100, -100)  # returned -9
    params = params_with()
    with pytest.raises(TypeError, match=r"index: expected a slice or a tensor of indices \(params\[0:0 \+ 1\]"):
        params[0]  # dropped the batch dimension, then 'expected AugmentParams' in apply_params
    assert params[0:1].box.shape == (1, 4)


def test_boxes_that_wrap_around_or_are_not_integers_are_refused():
    # top + h wrapped around in int64 for a huge box, which then cropped rows 7-8; bool boxes
    # were read as 0/1 pixels
    x = torch.arange(64.0).view(1, 1, 8, 8).expand(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"boxes: expected \(top, left, height, width\) boxes inside the 8x8 images, "
                                         r"got \[1, 0, 9223372036854775807, 8\]"):
        A.resized_crop(x, torch.tensor([[1, 0, 2 ** 63 - 1, 8]]), 2)
    for dtype in (torch.bool, torch.complex64):
        with pytest.raises(ValueError, match=rf"boxes: expected an integer tensor of shape \(1, 4\), got "
                                             rf"{str(dtype).removeprefix('torch.')} of shape \(1, 4\)"):
            A.resized_crop(x, torch.ones(1, 4, dtype=dtype), 2)
    # narrow and wide unsigned boxes are checked in int64: uint8's 300 - top wrapped around, and
    # uint16-64 comparisons raised NotImplementedError ("ge_cpu" not implemented for 'UInt16')
    tall = torch.rand(1, 3, 300, 300)
    inside = torch.tensor([[0, 0, 100, 100]])
    for dtype in (torch.uint8, torch.int8, torch.uint16, torch.uint32, torch.uint64):
        torch.testing.assert_close(A.resized_crop(tall, inside.to(dtype), 4), A.resized_crop(tall, inside, 4))
    params = A.SimCLRAugment().sample_params(1, 8, 8)
    params.box[0] = torch.tensor([1, 0, 2 ** 63 - 1, 8])
    with pytest.raises(ValueError, match="inside the 8x8 images"):
        A.SimCLRAugment().apply_params(x, params)


def test_crop_sizes_and_devices_are_checked_by_name():
    with pytest.raises(ValueError, match=r"height: expected an int in 1..2\*\*31-1, got 1267650600228229401496703205376"):
        A.sample_crop_boxes(3, 2 ** 100, 2 ** 100)  # was OverflowError: int too big to convert
    assert A.sample_crop_boxes(2, 9000, 3).shape == (2, 4)  # sides past render's 8192 are images too
    with pytest.raises(ValueError, match="device: expected a device such as 'cpu'"):
        A.sample_crop_boxes(3, 8, 8, device="nope")
    with pytest.raises(ValueError, match="device: expected a device such as 'cpu'"):
        A.SimCLRAugment().sample_params(2, 8, 8, device="nope")
