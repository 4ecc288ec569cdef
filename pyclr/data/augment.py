"""Batched contrastive-learning augmentations: the SimCLR policy and the papers' crops.

Every function takes a batch ``x`` of shape (B, C, H, W), float in [0, 1] or uint8 (read as
``x / 255``), on any device, and gives every sample its own random parameters, drawn from an
optional ``torch.Generator`` (without one, torch's default CPU generator, so
``torch.manual_seed`` makes a call reproducible). Pixels must be finite: inf or NaN is refused
on the CPU (one min/max pass, under 1% of the policy); on a GPU the check would wait for the
device on every call, so there it is the caller's to keep, and such pixels give NaN. Output
sizes are at most 8192 a side (``check_size``). There is no per-sample Python loop: crops
and flips are one ``grid_sample``, colour ops are per-sample blends, the blur is a grouped
convolution per axis. On the CPU a batch runs in cache-sized slices of samples.

Channels. The leading ``image_channels`` channels (1 = grey, 3 = RGB) are the image; any
further channels (the random-bits experiment's constant bit planes) are cropped, resized and
flipped with the image but never colour-jittered, greyed or blurred. With ``image_channels``
left as None, a 1- or 3-channel batch is all image; any other channel count must say how many
leading channels are the image, because a grey digit with two bit planes also has 3 channels.
On a grey image, brightness and contrast apply; saturation, hue and grayscale are no-ops
(as in torchvision).

Semantics follow torchvision's tensor kernels (``torchvision.transforms.v2``):
- random resized crop: area fraction uniform in ``scale``, aspect ratio log-uniform in
  ``ratio``, up to 10 tries per sample, then a central crop of the closest aspect; the crop is
  resized bilinearly without antialiasing (``antialias=False``), so a crop larger than the
  output (downscaling) aliases where torchvision's default would smooth it;
- colour jitter: brightness multiplies by a factor in [max(0, 1 - b), 1 + b]; contrast blends
  with the mean of the grey image; saturation blends with the grey image; hue rotates the HSV
  hue by a shift in [-h, h]; each clamps to [0, 1]. The four ops run in a random order drawn
  per sample, as torchvision draws one per call;
- grey is 0.2989 R + 0.587 G + 0.114 B (ITU-R 601 luma with torchvision's rounding of R);
- Gaussian blur: per-sample sigma, reflect padding, a kernel of 10% of the output size made odd
  (SimCLR's 23 taps at 224).

``SimCLRAugment`` composes crop+flip, jitter (p = 0.8), grayscale (p = 0.2) and blur in
SimCLR's order; each part switches off on its own. ``crop_without_resize`` is the hierarchy
data's crop (Hermann et al.: 38x38 -> 28x28) and ``random_bits_crop`` the random-bits data's
(Chen et al.: area 0.5-1, aspect 3/4-4/3, resized back).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from .._checks import (check_bool, check_choice, check_device, check_generator, check_int, check_nonnegative,
                       check_real, check_size, is_int, widen_unsigned)

__all__ = [
    "AugmentParams",
    "SimCLRAugment",
    "POLICIES",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "blur_kernel_size",
    "crop_without_resize",
    "gaussian_blur",
    "random_bits_crop",
    "resized_crop",
    "rgb_to_grayscale",
    "sample_crop_boxes",
]

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's; PIL's 0.299 differs by 1e-4 of R
CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries this many boxes before falling back
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)  # columns of AugmentParams.factors, ops in .order
NO_OP = -1  # a step in the per-sample jitter schedule where a sample does nothing
MAX_JITTER_STRENGTH = 2.5  # hue = 0.2 s must stay within torchvision's [-0.5, 0.5]
CPU_CHUNK_ELEMENTS = 1 << 19  # a CPU batch is augmented in slices of about this many values


# ----------------------------------------------------------------------------- validation

def _check_images(name: str, x, finite: bool = True) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a 4-D batch (B, C, H, W), got shape {tuple(x.shape)}")
    if not (x.is_floating_point() or x.dtype == torch.uint8):
        raise TypeError(f"{name}: expected a floating-point or uint8 tensor, got {x.dtype}")
    if min(x.shape[1:]) == 0:
        raise ValueError(f"{name}: expected C, H and W > 0, got shape {tuple(x.shape)}")
    # inf or NaN pixels come out NaN (0 * inf in the interpolation weights, inf - inf in the
    # colour ops). Checked on the CPU only: on a GPU reading the answer waits for the device.
    # (finite=False: the caller checks, from a min/max pass of its own)
    if finite and x.is_floating_point() and x.device.type == "cpu" and x.numel():
        _check_finite(name, *torch.aminmax(x))


def _check_finite(name: str, low: torch.Tensor, high: torch.Tensor) -> None:
    """From the minima and maxima of a CPU tensor (NaN propagates to both)."""
    if not (-math.inf < low.min().item() and high.max().item() < math.inf):
        raise ValueError(f"{name}: expected finite values, got inf or NaN")


def _check_probability(name: str, p) -> float:
    return check_real(name, p, 0, 1)


def _check_range(name: str, value, positive: bool = False) -> tuple[float, float]:
    """A pair (low, high) of finite numbers, low <= high (and low > 0 when ``positive``)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise TypeError(f"{name}: expected a pair (low, high), got {value!r}")
    low, high = (check_nonnegative(name, v) if positive else check_real(name, v) for v in value)
    if low > high or (positive and low <= 0):
        bound = "0 < low <= high" if positive else "low <= high"
        raise ValueError(f"{name}: expected {bound}, got {value!r}")
    return low, high


def _check_crop_scale(name: str, value) -> tuple[float, float]:
    """A crop's (low, high) area fractions, 0 < low <= high <= 1."""
    low, high = _check_range(name, value, positive=True)
    if high > 1:
        raise ValueError(f"{name}: expected area fractions in (0, 1], got {value!r}")
    return low, high


def _check_odd(name: str, value) -> int:
    value = check_int(name, value, 1)
    if value % 2 == 0:
        raise ValueError(f"{name}: expected an odd int >= 1, got {value}")
    return value


def _check_factor(name: str, factor, batch: int, low: float, high: float, dtype: torch.dtype | None = None):
    """A number in [low, high], or a (batch,) tensor of them (one per sample). With ``dtype``,
    the one the images are computed in, also at most its largest value: a factor that becomes
    inf there gives 0 * inf = NaN (1e39 on a black float32 image)."""
    top = high if dtype is None else min(high, torch.finfo(dtype).max)
    too_large = f"{name}: expected at most {top}, the largest {dtype} (the images are computed in it)"
    if isinstance(factor, torch.Tensor):
        if factor.shape != (batch,):
            raise ValueError(f"{name}: expected a number or a tensor of shape ({batch},), "
                             f"got shape {tuple(factor.shape)}")
        valid = torch.isfinite(factor) & (factor >= low) & (factor <= high)
        if not bool((valid & (factor <= top)).all()):
            if bool(valid.all()):
                raise ValueError(f"{too_large}, got {factor.max().item()}")
            raise ValueError(f"{name}: expected finite values in [{low}, {high}]")
        return factor
    value = check_real(name, factor)
    if not low <= value <= high:
        raise ValueError(f"{name}: expected a value in [{low}, {high}], got {value}")
    if value > top:
        raise ValueError(f"{too_large}, got {value}")
    return value


# ----------------------------------------------------------------------------- helpers

def _as_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1]; half types compute in float32 (grid_sample and conv on the
    CPU lack them); float32/float64 as they are."""
    if x.dtype == torch.uint8:
        return x.float().div_(255)
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype ``_as_float`` gives ``x``."""
    return x.dtype if x.dtype == torch.float64 else torch.float32


def _restore(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return out.to(x.dtype) if x.dtype in (torch.float16, torch.bfloat16) else out


def _per_sample(value, like: torch.Tensor):
    """A number stays a number; a (B,) tensor becomes (B, 1, 1, 1) to broadcast over images."""
    if isinstance(value, torch.Tensor):
        return value.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)
    return value


def _draw_device(generator, device) -> torch.device:
    """Parameters are drawn where the generator lives (a CPU generator gives the same draws
    for a CPU and a GPU batch), or on ``device`` with its default generator. Drawing on the
    CPU for a GPU batch costs a host-to-device copy of the draws, which waits for the GPU's
    queue: a generator on the GPU avoids it."""
    return generator.device if generator is not None else torch.device(device)


def _uniform(shape, low, high, generator, device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
    return low + (high - low) * u


def _randint_below(n: torch.Tensor, generator, device) -> torch.Tensor:
    """A uniform integer in [0, n) per entry of ``n`` (int64, all >= 1)."""
    u = torch.rand(n.shape, generator=generator, device=device, dtype=torch.float64)
    return torch.minimum((u * n).long(), n - 1)  # u * n rounds up to n for u near 1


# ----------------------------------------------------------------------------- geometry

def sample_crop_boxes(batch: int, height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                      generator: torch.Generator | None = None, device="cpu") -> torch.Tensor:
    """Random resized crop boxes as torchvision draws them, one per sample.

    Returns a (batch, 4) int64 tensor of (top, left, height, width) in pixels, on ``device``,
    drawn on the generator's device (without one, on ``device`` with its default generator).
    Per sample: up to 10 tries of an area ``uniform(scale) * height * width`` and an aspect
    ``exp(uniform(log ratio))``; the first try that fits is used, otherwise a central crop
    clipped to the closest allowed aspect.
    """
    batch = check_int("batch", batch, 0)
    # any side an image may have; bounded so that height * width * a float64 draw stays a float
    height, width = check_int("height", height, 1, 2 ** 31 - 1), check_int("width", width, 1, 2 ** 31 - 1)
    scale = _check_crop_scale("scale", scale)
    ratio = _check_range("ratio", ratio, positive=True)
    check_generator(generator)
    device = check_device(device)
    draw = _draw_device(generator, device)
    area = height * width * _uniform((batch, CROP_ATTEMPTS), *scale, generator, draw)
    aspect = torch.exp(_uniform((batch, CROP_ATTEMPTS), *map(math.log, ratio), generator, draw))
    # Round half to even, like Python's round; sides beyond the image do not fit, and capping
    # them first keeps a huge aspect's out of the float -> int64 cast (undefined beyond 2**63).
    w = torch.sqrt(area * aspect).round().clamp(max=width + 1).long()
    h = torch.sqrt(area / aspect).round().clamp(max=height + 1).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # argmax returns the first maximum
    central = ~fits.any(1)
    fh, fw = _fallback_crop(height, width, ratio)
    h = torch.where(central, fh, h.gather(1, first).squeeze(1))
    w = torch.where(central, fw, w.gather(1, first).squeeze(1))
    top = _randint_below(height - h + 1, generator, draw)
    left = _randint_below(width - w + 1, generator, draw)
    top = torch.where(central, (height - h) // 2, top)
    left = torch.where(central, (width - w) // 2, left)
    return torch.stack((top, left, h, w), dim=1).to(device)


def _fallback_crop(height: int, width: int, ratio) -> tuple[int, int]:
    """torchvision's central-crop fallback: the whole image, clipped to the aspect range, and
    at least a pixel a side (torchvision's rounds an aspect of 40 on a square to height 0)."""
    in_ratio = width / height
    if in_ratio < ratio[0]:
        return max(1, int(round(width / ratio[0]))), width
    if in_ratio > ratio[1]:
        return height, max(1, int(round(height * ratio[1])))
    return height, width


def _axis_grid(start, length, n_in: int, n_out: int) -> torch.Tensor:
    """grid_sample coordinates (align_corners=False) along one axis, (B, n_out) float64.

    Resizing a crop [start, start + length) to n_out pixels samples at crop coordinate
    (i + 0.5) * length / n_out - 0.5, clamped to the crop as F.interpolate clamps to the image,
    so pixels outside the box never leak in at its edges.
    """
    i = torch.arange(n_out, device=start.device, dtype=torch.float64)
    length = length.double().unsqueeze(1)
    src = (i + 0.5) * length / n_out - 0.5
    src = torch.minimum(src.clamp(min=0), length - 1) + start.double().unsqueeze(1)
    return (2 * src + 1) / n_in - 1


def _check_boxes(name: str, boxes: torch.Tensor, height: int, width: int) -> None:
    """(top, left, height, width) rows inside a height x width image, at least a pixel each.
    Checked in int64: in uint8 a 300-pixel side minus top wrapped around, and torch compares
    no uint16-64 values."""
    boxes = widen_unsigned(name, boxes).long()
    top, left, h, w = boxes.unbind(1)
    # h <= height - top, not top + h <= height: the sum wraps around in int64 for huge boxes
    inside = (top >= 0) & (left >= 0) & (h >= 1) & (w >= 1) & (h <= height - top) & (w <= width - left)
    if not bool(inside.all()):
        bad = boxes[~inside][0].tolist()
        raise ValueError(f"{name}: expected (top, left, height, width) boxes inside the {height}x{width} "
                         f"images, got {bad}")


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size,
                 flip: torch.Tensor | None = None) -> torch.Tensor:
    """Crops each sample to its box (top, left, height, width) and resizes it to ``size``
    (bilinear, no antialiasing), mirroring the samples where ``flip`` (B,) is True.

    The same as torchvision's ``resized_crop(..., antialias=False)`` followed by
    ``horizontal_flip``, for a whole batch in one ``grid_sample``.
    """
    _check_images("x", x)
    out_h, out_w = check_size("size", size)
    batch, _, height, width = x.shape
    if (not isinstance(boxes, torch.Tensor) or boxes.shape != (batch, 4)
            or _dtype_kind(boxes, "integer") != "integer"):
        got = (f"{str(boxes.dtype).removeprefix('torch.')} of shape {tuple(boxes.shape)}"
               if isinstance(boxes, torch.Tensor) else type(boxes).__name__)
        raise ValueError(f"boxes: expected an integer tensor of shape ({batch}, 4), got {got}")
    if flip is not None and (not isinstance(flip, torch.Tensor) or flip.dtype != torch.bool or flip.shape != (batch,)):
        got = f"{flip.dtype} of shape {tuple(flip.shape)}" if isinstance(flip, torch.Tensor) else type(flip).__name__
        raise ValueError(f"flip: expected None or a bool tensor of shape ({batch},), got {got}")
    if boxes.device.type == "cpu":  # on a GPU this check would wait for the device
        _check_boxes("boxes", boxes, height, width)
    return _resized_crop(x, boxes, out_h, out_w, flip)


def _resized_crop(x: torch.Tensor, boxes: torch.Tensor, out_h: int, out_w: int,
                  flip: torch.Tensor | None) -> torch.Tensor:
    """resized_crop on checked arguments (SimCLRAugment checks its params once per call)."""
    height, width = x.shape[2:]
    boxes = boxes.to(x.device)
    gx = _axis_grid(boxes[:, 1], boxes[:, 3], width, out_w)
    gy = _axis_grid(boxes[:, 0], boxes[:, 2], height, out_h)
    if flip is not None:
        gx = torch.where(flip.to(x.device).view(-1, 1), gx.flip(1), gx)  # read the row backwards
    work = _as_float(x)
    grid = torch.stack((gx.unsqueeze(1).expand(-1, out_h, -1), gy.unsqueeze(2).expand(-1, -1, out_w)), -1)
    out = F.grid_sample(work, grid.to(work.dtype), mode="bilinear", padding_mode="border",
                        align_corners=False)
    return _restore(out, x)


def crop_without_resize(x: torch.Tensor, size, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random ``size`` crop of each sample at full resolution, every position equally likely
    (the hierarchy data's augmentation: 38x38 items, 28x28 crops)."""
    _check_images("x", x)
    crop_h, crop_w = check_size("size", size)
    check_generator(generator)
    batch, channels, height, width = x.shape
    if crop_h > height or crop_w > width:
        raise ValueError(f"size: expected at most the image's ({height}, {width}), got {size!r}")
    draw = _draw_device(generator, "cpu")
    room = torch.empty(batch, 2, dtype=torch.long, device=draw)  # built there: no host copy
    room[:, 0], room[:, 1] = height - crop_h + 1, width - crop_w + 1
    top, left = _randint_below(room, generator, draw).to(x.device).unbind(1)
    rows = (top.view(-1, 1) + torch.arange(crop_h, device=x.device)).view(batch, 1, crop_h, 1)
    cols = (left.view(-1, 1) + torch.arange(crop_w, device=x.device)).view(batch, 1, 1, crop_w)
    out = x.gather(2, rows.expand(batch, channels, crop_h, width))
    out = out.gather(3, cols.expand(batch, channels, crop_h, crop_w))
    return out.float().div_(255) if x.dtype == torch.uint8 else out


def random_bits_crop(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The random-bits data's crop (Chen et al.): area (0.5, 1), aspect (3/4, 4/3), resized back
    to the input's size. The bit channels are cropped with the image; being constant, they
    stay the same in both views."""
    _check_images("x", x, finite=False)
    check_generator(generator)
    batch, _, height, width = x.shape
    # one min/max pass per plane: the finiteness check (on the CPU) and the constant planes
    planes = x.flatten(2)
    low, high = planes.amin(2), planes.amax(2)  # aminmax(dim=2) took 10x as long on the CPU
    if x.is_floating_point() and x.device.type == "cpu" and x.numel():
        _check_finite("x", low, high)
    draw = _draw_device(generator, "cpu")
    boxes = sample_crop_boxes(batch, height, width, (0.5, 1.0), (3 / 4, 4 / 3), generator, draw)
    out = _resized_crop(x, boxes, height, width, None)  # boxes drawn for x: inside it
    # The bilinear weights sum to 1 only up to rounding (a plane of ones came out 0.99999994
    # in places), so each constant plane, a bit plane say, is put back exactly: on the CPU only
    # those planes are written; on a GPU finding them would wait for the device, so one where().
    constant = low == high
    value = (low.float() / 255 if x.dtype == torch.uint8 else low).to(out.dtype)
    if x.device.type == "cpu":
        b, c = constant.nonzero(as_tuple=True)
        out[b, c] = value[b, c][:, None, None]
        return out
    return torch.where(constant[..., None, None], value[..., None, None], out)


# ----------------------------------------------------------------------------- colour

def _gray(img: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of an RGB or grey image."""
    if img.shape[1] == 1:
        return img
    r, g, b = img.split(1, dim=1)  # (B, 1, H, W) views: the CPU is several times slower on unbind's
    return r * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + b * GRAY_WEIGHTS[2]


def _blend(img: torch.Tensor, target, factor) -> torch.Tensor:
    """torchvision's blend: factor * img + (1 - factor) * target, clamped to [0, 1]. A factor
    of 1 returns ``img`` exactly (target * 0 adds nothing)."""
    if not isinstance(target, torch.Tensor):
        return (img * factor).clamp_(0, 1)  # brightness (target 0): torchvision's exact product
    if isinstance(factor, torch.Tensor):  # one pass fewer than the sum below
        return torch.addcmul(target * (1 - factor), img, factor).clamp_(0, 1)
    return (img * factor + target * (1 - factor)).clamp_(0, 1)


def _check_colour_image(name: str, img) -> None:
    _check_images(name, img)
    if img.shape[1] not in (1, 3):
        raise ValueError(f"{name}: expected 1 (grey) or 3 (RGB) channels, got {img.shape[1]}; "
                         f"pass the image channels only")


def adjust_brightness(img: torch.Tensor, factor) -> torch.Tensor:
    """Multiplies by ``factor`` (a number >= 0 or one per sample), clamped to [0, 1]."""
    _check_colour_image("img", img)
    factor = _check_factor("factor", factor, img.shape[0], 0, math.inf, _compute_dtype(img))
    work = _as_float(img)
    return _restore(_blend(work, 0.0, _per_sample(factor, work)), img)


def adjust_contrast(img: torch.Tensor, factor) -> torch.Tensor:
    """Blends with the mean of the grey image by ``factor`` (>= 0, or one per sample)."""
    _check_colour_image("img", img)
    factor = _check_factor("factor", factor, img.shape[0], 0, math.inf, _compute_dtype(img))
    work = _as_float(img)
    mean = _gray(work).mean(dim=(1, 2, 3), keepdim=True)
    return _restore(_blend(work, mean, _per_sample(factor, work)), img)


def adjust_saturation(img: torch.Tensor, factor) -> torch.Tensor:
    """Blends with the grey image by ``factor`` (>= 0, or one per sample); a no-op on grey."""
    _check_colour_image("img", img)
    factor = _check_factor("factor", factor, img.shape[0], 0, math.inf, _compute_dtype(img))
    work = _as_float(img)
    if work.shape[1] == 1:
        return _restore(work, img)
    return _restore(_blend(work, _gray(work), _per_sample(factor, work)), img)


def adjust_hue(img: torch.Tensor, shift) -> torch.Tensor:
    """Rotates the HSV hue by ``shift`` turns (in [-0.5, 0.5], or one per sample); a no-op on grey."""
    _check_colour_image("img", img)
    shift = _check_factor("shift", shift, img.shape[0], -0.5, 0.5)
    work = _as_float(img)
    if work.shape[1] == 1:
        return _restore(work, img)
    return _restore(_rotate_hue(work, _per_sample(shift, work)), img)


def _rotate_hue(img: torch.Tensor, shift) -> torch.Tensor:
    """torchvision's RGB -> HSV -> hue + shift -> RGB, without forming S and V: a hue rotation
    keeps each pixel's max (V) and min (V (1 - S)), so channel n in (5, 3, 1) (R, G, B) is
    max - (max - min) clamp(min(k, 4 - k), 0, 1) with k = (n + 6 hue) mod 6, the sector table
    of the usual HSV -> RGB conversion written as one formula (no per-pixel gather)."""
    r, g, b = img.split(1, dim=1)
    maxc, minc = img.amax(1, keepdim=True), img.amin(1, keepdim=True)
    delta = maxc - minc
    # Hue in sixths of a turn. Grey pixels (delta 0) divide by 1 instead; their hue does not
    # matter, since they come back as max - 0 in every channel.
    at_r, at_g = maxc == r, maxc == g
    num = torch.where(at_r, g - b, torch.where(at_g, b - r, r - g))
    offset = torch.where(at_r, 0.0, torch.where(at_g, 2.0, 4.0))
    sixths = num / torch.where(delta == 0, torch.ones_like(delta), delta) + offset + 6 * shift
    n = (5 - 2 * torch.arange(3, device=img.device, dtype=img.dtype)).view(1, 3, 1, 1)  # 5, 3, 1
    k = torch.remainder(n + sixths, 6)
    return maxc - delta * torch.minimum(k, 4 - k).clamp_(0, 1)


def rgb_to_grayscale(img: torch.Tensor) -> torch.Tensor:
    """Every channel set to the luma (shape kept, as torchvision's RandomGrayscale); grey stays."""
    _check_colour_image("img", img)
    work = _as_float(img)
    return _restore(_gray(work).expand_as(work).clone(), img)


# ----------------------------------------------------------------------------- blur

def blur_kernel_size(height: int, width: int) -> int:
    """SimCLR's kernel: 10% of the image's side, made odd (23 at 224, 3 at 32)."""
    height, width = check_int("height", height, 1), check_int("width", width, 1)  # -100 gave -9
    return 2 * (min(height, width) // 20) + 1


def gaussian_blur(img: torch.Tensor, sigma, kernel_size: int | None = None) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding, one sigma per sample (a number or a (B,)
    tensor; sigma 0 leaves that sample exactly as it is). Every channel is blurred.
    ``kernel_size``: odd, default ``blur_kernel_size``; capped so the padding fits the image."""
    _check_images("img", img)
    batch, channels, height, width = img.shape
    sigma = _check_factor("sigma", sigma, batch, 0, math.inf)
    if kernel_size is None:
        kernel_size = blur_kernel_size(height, width)
    _check_odd("kernel_size", kernel_size)
    if not isinstance(sigma, torch.Tensor):
        sigma = torch.full((batch,), sigma, device=img.device, dtype=torch.float64)
    return _restore(_blur(_as_float(img), sigma, kernel_size), img)


def _blur(img: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The blur of checked arguments: per-sample kernels, one grouped convolution per axis
    (which cuDNN may run in TF32 under torch.backends.cudnn.allow_tf32, as torchvision's)."""
    batch, channels, height, width = img.shape
    if batch == 0:  # conv2d refuses the (1, 0, H, W) batch below
        return img.clone()
    radius = min(kernel_size // 2, height - 1, width - 1)  # reflect padding needs pad < side
    kernel = _gaussian_kernels(sigma.to(device=img.device, dtype=torch.float64), radius)
    kernel = kernel.to(img.dtype).repeat_interleave(channels, dim=0)
    flat = F.pad(img.reshape(1, batch * channels, height, width), (radius,) * 4, mode="reflect")
    flat = F.conv2d(flat, kernel.view(-1, 1, 2 * radius + 1, 1), groups=batch * channels)
    flat = F.conv2d(flat, kernel.view(-1, 1, 1, 2 * radius + 1), groups=batch * channels)
    return flat.view(batch, channels, height, width)


def _gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, 2 radius + 1) normalised Gaussian taps; a one-hot centre tap where sigma is 0."""
    t = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float64)
    safe = torch.where(sigma > 0, sigma, torch.ones_like(sigma)).unsqueeze(1)
    kernel = torch.softmax(-(t / safe) ** 2 / 2, dim=1)
    return torch.where((sigma > 0).unsqueeze(1), kernel, (t == 0).double().expand_as(kernel))


# ----------------------------------------------------------------------------- the policy

@dataclass(frozen=True, eq=False)
class AugmentParams:
    """The random draws of one ``SimCLRAugment`` call, one row per sample.

    box: (B, 4) int64 crop (top, left, height, width) in input pixels; flip: (B,) bool;
    jitter: (B,) bool, colour jitter applied; factors: (B, 4) brightness, contrast and
    saturation factors and hue shift; order: (B, 4) int64, the order of the four jitter ops
    (0 brightness, 1 contrast, 2 saturation, 3 hue); grayscale: (B,) bool; sigma: (B,) float64
    blur sigma, 0 where not blurred.
    """

    box: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    factors: torch.Tensor
    order: torch.Tensor
    grayscale: torch.Tensor
    sigma: torch.Tensor

    def to(self, device) -> "AugmentParams":
        return AugmentParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __getitem__(self, index) -> "AugmentParams":
        """The parameters of a slice of the batch (``params[i:i + 1]`` for sample ``i``: an int
        index would drop the batch dimension every field has)."""
        if is_int(index) or (isinstance(index, torch.Tensor) and index.dim() == 0):
            raise TypeError(f"index: expected a slice or a tensor of indices (params[{index}:{index} + 1] for one "
                            "sample), got an int")
        return AugmentParams(**{f.name: getattr(self, f.name)[index] for f in fields(self)})


PARAM_LAYOUT = {  # AugmentParams field: its shape after the batch dimension, its kind of dtype
    "box": ((4,), "integer"), "flip": ((), "bool"), "jitter": ((), "bool"),
    "factors": ((4,), "floating-point"), "order": ((4,), "int64"), "grayscale": ((), "bool"),
    "sigma": ((), "floating-point"),
}


def _dtype_kind(t: torch.Tensor, kind: str) -> str:
    """``t``'s dtype as PARAM_LAYOUT names ``kind``s (the order indexes a gather, which wants
    int64; a box may be any integer type, as resized_crop takes)."""
    if t.is_floating_point():
        return "floating-point"
    if kind == "integer" and t.dtype not in (torch.bool,) and not t.is_complex():
        return "integer"
    return str(t.dtype).removeprefix("torch.")


def _check_params(params, batch: int, height: int, width: int, dtype: torch.dtype) -> None:
    """Hand-built params for a batch of ``batch`` ``height`` x ``width`` images computed in
    ``dtype``: each field's type, shape and dtype (free), and the values of the fields on the
    CPU (free there; on a GPU reading them would wait for the device): boxes inside the
    images, orders that are permutations, factors in their ops' ranges, sigmas >= 0."""
    if not isinstance(params, AugmentParams):
        raise TypeError(f"params: expected AugmentParams, got {type(params).__name__}")
    box = params.box
    if isinstance(box, torch.Tensor) and box.dim() > 0 and box.shape[0] != batch:
        raise ValueError(f"params: expected AugmentParams for a batch of {batch}, got one for {box.shape[0]}")
    for f in fields(params):
        value, (tail, kind) = getattr(params, f.name), PARAM_LAYOUT[f.name]
        shape, article = (batch, *tail), "an" if kind[0] in "aeiou" else "a"
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"params.{f.name}: expected {article} {kind} tensor of shape {shape}, "
                            f"got {type(value).__name__}")
        if _dtype_kind(value, kind) != kind:
            raise TypeError(f"params.{f.name}: expected {article} {kind} tensor, got {value.dtype}")
        if value.shape != shape:
            raise ValueError(f"params.{f.name}: expected shape {shape}, got {tuple(value.shape)}")
    if box.device.type == "cpu":  # drawn for images of another size, they crop outside x
        _check_boxes("params.box", box, height, width)
    order = params.order
    if order.device.type == "cpu":
        bad = (order.sort(dim=1).values != torch.arange(4)).any(dim=1)
        if bool(bad.any()):
            raise ValueError(f"params.order: expected rows that are permutations of 0, 1, 2, 3, "
                             f"got {order[bad][0].tolist()}")
    factors, top = params.factors, torch.finfo(dtype).max
    if factors.device.type == "cpu":
        blends, hue = factors[:, :HUE], factors[:, HUE]
        good = ((blends >= 0) & (blends <= top)).all(dim=1) & (hue >= -0.5) & (hue <= 0.5)
        if not bool(good.all()):  # NaN fails every comparison
            raise ValueError(f"params.factors: expected brightness, contrast and saturation factors "
                             f"in [0, {top}] ({dtype}) and a hue shift in [-0.5, 0.5], "
                             f"got {factors[~good][0].tolist()}")
    sigma = params.sigma
    if sigma.device.type == "cpu":
        good = (sigma >= 0) & (sigma < math.inf)
        if not bool(good.all()):
            raise ValueError(f"params.sigma: expected finite values >= 0, got {sigma[~good][0].item()}")


def _policy(crop: bool, jitter_strength: float, blur_p: float = 0.0) -> dict:
    """Crop brings SimCLR's flip (p = 0.5); jitter its probability 0.8 and colour dropping 0.2."""
    jitter = jitter_strength > 0
    return dict(crop=crop, flip_p=0.5 if crop else 0.0, jitter_strength=jitter_strength,
                jitter_p=0.8 if jitter else 0.0, grayscale_p=0.2 if jitter else 0.0, blur_p=blur_p)


POLICIES = {
    # SimCLR (Chen et al. 2020): ImageNet with blur; CIFAR-10 with s = 0.5 and no blur.
    "simclr_imagenet": _policy(crop=True, jitter_strength=1.0, blur_p=0.5),
    "simclr_cifar": _policy(crop=True, jitter_strength=0.5),
    "none": _policy(crop=False, jitter_strength=0.0),
    # Sprites (Hermann et al., appendix A.2): "colour jitter" = distortion (s = 0.5, p = 0.8)
    # + colour dropping (p = 0.2); "random crop" = resized crop, area 8-100%, aspect 3/4-4/3.
    # The flip goes with the crop, as in SimCLR's crop branch (the paper does not say).
    "sprites_none": _policy(crop=False, jitter_strength=0.0),
    "sprites_jitter": _policy(crop=False, jitter_strength=0.5),
    "sprites_crop": _policy(crop=True, jitter_strength=0.0),
    "sprites_crop+jitter": _policy(crop=True, jitter_strength=0.5),
}


class SimCLRAugment(torch.nn.Module):
    """The SimCLR augmentation policy on a batch: random resized crop and horizontal flip,
    colour jitter, random grayscale, Gaussian blur, each sample with its own draws.

    Args:
        size: output (height, width) or int; None keeps the input's size.
        crop: random resized crop with ``crop_scale`` (area fraction) and ``crop_ratio``
            (aspect, log-uniform); False uses the whole image (resized to ``size`` if given).
        flip_p: probability of a horizontal flip.
        jitter_strength: s; brightness = contrast = saturation = 0.8 s, hue = 0.2 s (SimCLR),
            s in [0, 2.5]; 0 switches jitter off.
        jitter_p: probability that a sample is jittered (its four ops in a random order).
        grayscale_p: probability of colour dropping (after jitter).
        blur_p: probability of a Gaussian blur with sigma uniform in ``blur_sigma``, kernel
            ``blur_kernel`` (odd; default 10% of the output size).
        image_channels: how many leading channels are the image (1 or 3); the rest are only
            cropped and flipped. None: all of a 1- or 3-channel batch.

    ``aug(x, generator)`` augments; ``aug.two_views(x, generator)`` gives two independent
    views; ``sample_params`` and ``apply_params`` split a call into its draws and their effect.
    ``SimCLRAugment.from_policy(name, size)`` builds one of ``POLICIES``.
    """

    def __init__(self, size=None, *, crop: bool = True, crop_scale=(0.08, 1.0),
                 crop_ratio=(3 / 4, 4 / 3),
                 flip_p: float = 0.5, jitter_strength: float = 1.0, jitter_p: float = 0.8,
                 grayscale_p: float = 0.2, blur_p: float = 0.5, blur_sigma=(0.1, 2.0),
                 blur_kernel: int | None = None, image_channels: int | None = None):
        super().__init__()
        self.size = None if size is None else check_size("size", size)
        self.crop = check_bool("crop", crop)
        self.crop_scale = _check_crop_scale("crop_scale", crop_scale)
        self.crop_ratio = _check_range("crop_ratio", crop_ratio, positive=True)
        self.flip_p = _check_probability("flip_p", flip_p)
        self.jitter_strength = check_nonnegative("jitter_strength", jitter_strength)
        if self.jitter_strength > MAX_JITTER_STRENGTH:
            raise ValueError(f"jitter_strength: expected at most {MAX_JITTER_STRENGTH} (hue 0.2 s <= 0.5), "
                             f"got {jitter_strength}")
        self.jitter_p = _check_probability("jitter_p", jitter_p)
        self.grayscale_p = _check_probability("grayscale_p", grayscale_p)
        self.blur_p = _check_probability("blur_p", blur_p)
        self.blur_sigma = _check_range("blur_sigma", blur_sigma, positive=True)
        self.blur_kernel = None if blur_kernel is None else _check_odd("blur_kernel", blur_kernel)
        if image_channels is not None:
            image_channels = check_int("image_channels", image_channels)
            check_choice("image_channels", image_channels, (1, 3))
        self.image_channels = image_channels

    @classmethod
    def from_policy(cls, name: str, size=None, **overrides) -> "SimCLRAugment":
        """One of ``POLICIES`` (keyword arguments override its settings)."""
        check_choice("name", name, tuple(POLICIES))
        return cls(size, **{**POLICIES[name], **overrides})

    def extra_repr(self) -> str:
        keys = ("size", "crop", "crop_scale", "crop_ratio", "flip_p", "jitter_strength", "jitter_p",
                "grayscale_p", "blur_p", "blur_sigma", "blur_kernel", "image_channels")
        return ", ".join(f"{k}={getattr(self, k)!r}" for k in keys)

    # -- draws

    def jitter_ranges(self) -> tuple[tuple[float, float], ...]:
        """(low, high) of the brightness, contrast and saturation factors and the hue shift."""
        b, h = 0.8 * self.jitter_strength, 0.2 * self.jitter_strength
        return (max(0.0, 1 - b), 1 + b), (max(0.0, 1 - b), 1 + b), (max(0.0, 1 - b), 1 + b), (-h, h)

    def sample_params(self, batch: int, height: int, width: int, generator: torch.Generator | None = None,
                      device=None) -> AugmentParams:
        """Draws every part's parameters for a batch of ``height`` x ``width`` images, in a
        fixed order whatever is switched off (so switching a part off changes no other draw).
        ``device``: where the result goes; default the generator's device, else the CPU."""
        check_generator(generator)
        device = None if device is None else check_device(device)
        draw = _draw_device(generator, "cpu")
        box = sample_crop_boxes(batch, height, width, self.crop_scale, self.crop_ratio, generator, draw)
        if not self.crop:
            box = torch.zeros_like(box)
            box[:, 2], box[:, 3] = height, width
        flip = torch.rand(batch, generator=generator, device=draw) < self.flip_p
        jitter = torch.rand(batch, generator=generator, device=draw) < self.jitter_p
        u = torch.rand((batch, 4), generator=generator, device=draw, dtype=torch.float64)
        ranges = self.jitter_ranges()
        factors = torch.stack([lo + (hi - lo) * u[:, i] for i, (lo, hi) in enumerate(ranges)], dim=1)
        # The argsort of iid uniforms is a uniformly random permutation.
        order = torch.rand((batch, 4), generator=generator, device=draw).argsort(dim=1)
        grayscale = torch.rand(batch, generator=generator, device=draw) < self.grayscale_p
        blurred = torch.rand(batch, generator=generator, device=draw) < self.blur_p
        sigma = torch.where(blurred, _uniform(batch, *self.blur_sigma, generator, draw), 0.0)
        jitter = jitter & (self.jitter_strength > 0)
        params = AugmentParams(box, flip, jitter, factors, order, grayscale, sigma)
        return params if device is None else params.to(device)

    # -- effects

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_images("x", x)
        return self._forward(x, generator)

    def _forward(self, x: torch.Tensor, generator) -> torch.Tensor:
        params = self.sample_params(x.shape[0], x.shape[2], x.shape[3], generator, device=x.device)
        return self._apply_params(x, params)  # drawn here for x: nothing to check

    def two_views(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Two independently augmented views of ``x`` (one call on the doubled batch)."""
        _check_images("x", x)  # once: the doubled batch holds nothing new
        views = self._forward(torch.cat((x, x)), generator)
        return views[: x.shape[0]], views[x.shape[0]:]

    def apply_params(self, x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Applies drawn ``params`` to ``x``: crop+flip, jitter, grayscale, blur (SimCLR's order).
        uint8 input gives float32 output in [0, 1]; float dtypes are kept. Each field of
        ``params`` is checked for its type, shape and dtype, and, where it is on the CPU, for
        its values (on a GPU reading them would wait for the device)."""
        _check_images("x", x)
        _check_params(params, x.shape[0], x.shape[2], x.shape[3], _compute_dtype(x))
        return self._apply_params(x, params)

    def _apply_params(self, x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        params = params.to(x.device)
        if x.device.type != "cpu":
            return _restore(self._apply(_as_float(x), params), x)
        # On the CPU every op streams the whole batch through memory; in slices of about
        # CPU_CHUNK_ELEMENTS the intermediates stay in cache (2x faster at 32 and 224 px).
        out_h, out_w = self.size or x.shape[2:]
        step = max(1, CPU_CHUNK_ELEMENTS // (x.shape[1] * out_h * out_w))
        starts = range(0, max(x.shape[0], 1), step)  # an empty batch is one empty chunk
        chunks = [self._apply(_as_float(x[i:i + step]), params[i:i + step]) for i in starts]
        return _restore(torch.cat(chunks) if len(chunks) > 1 else chunks[0], x)

    def _apply(self, x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        x = self._geometry(x, params)
        k = self._image_channels(x.shape[1])
        if k:
            img = self._colour(x[:, :k], params)
            x = torch.cat((img, x[:, k:]), dim=1) if k < x.shape[1] else img
        return x

    def _image_channels(self, channels: int) -> int:
        """How many leading channels the colour ops and blur act on (0: none of them is on)."""
        colour = (self.jitter_strength > 0 and self.jitter_p > 0) or self.grayscale_p > 0 or self.blur_p > 0
        if not colour:
            return 0
        if self.image_channels is None:
            if channels not in (1, 3):
                raise ValueError(f"x: has {channels} channels; pass image_channels=1 or 3 to say how many "
                                 f"leading channels are the image (the rest are only cropped and flipped)")
            return channels
        if self.image_channels > channels:
            raise ValueError(f"x: has {channels} channels, fewer than image_channels={self.image_channels}")
        return self.image_channels

    def _geometry(self, x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        size = self.size or tuple(x.shape[2:])
        if not self.crop and size == tuple(x.shape[2:]):  # no resampling: flips are exact
            return torch.where(params.flip.view(-1, 1, 1, 1), x.flip(3), x)
        return _resized_crop(x, params.box, *size, params.flip)

    def _colour(self, img: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        if self.jitter_strength > 0 and self.jitter_p > 0:
            img = _jitter(img, params)
        if self.grayscale_p > 0 and img.shape[1] == 3 and _any(params.grayscale):
            img = torch.where(params.grayscale.view(-1, 1, 1, 1), _gray(img).expand_as(img), img)
        if self.blur_p > 0 and _any(params.sigma > 0):
            kernel_size = self.blur_kernel or blur_kernel_size(*img.shape[2:])
            img = _blur(img, params.sigma, kernel_size)
        return img


def _jitter_schedule(params: AugmentParams) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Splits each sample's op order around its hue step: up to three blend ops before the
    hue rotation and up to three after, padded with NO_OP, so one batched hue pass serves
    every order (the blends are cheap, the HSV round trip is not)."""
    order = params.order
    hue_at = (order == HUE).int().argmax(dim=1, keepdim=True)
    off = ~params.jitter.view(-1, 1)
    before, after = [], []
    for step in range(3):
        op = order[:, step:step + 1]
        before.append(torch.where((step < hue_at) & ~off, op, NO_OP).squeeze(1))
        at = hue_at + 1 + step
        op = order.gather(1, at.clamp(max=3))
        after.append(torch.where((at <= 3) & ~off, op, NO_OP).squeeze(1))
    return before, after


def _any(mask: torch.Tensor) -> bool:
    """Whether any sample needs a step. Only asked on the CPU: on a GPU the answer would cost a
    device sync, more than a pass that changes nothing."""
    return mask.device.type != "cpu" or bool(mask.any())


def _jitter(img: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    before, after = _jitter_schedule(params)
    for op in before:
        if _any(op != NO_OP):
            img = _blend_step(img, op, params.factors)
    if img.shape[1] == 3 and _any(params.jitter):
        rotated = _rotate_hue(img, params.factors[:, HUE].to(img.dtype).view(-1, 1, 1, 1))
        img = torch.where(params.jitter.view(-1, 1, 1, 1), rotated, img)
    for op in after:
        if _any(op != NO_OP):
            img = _blend_step(img, op, params.factors)
    return img


def _blend_step(img: torch.Tensor, op: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Sample b applies brightness, contrast or saturation (op[b] = 0, 1, 2) or nothing (NO_OP):
    all three are blends, towards 0, the grey mean and the grey image."""
    if img.shape[1] == 1:  # saturation is a no-op on grey images
        op = torch.where(op == SATURATION, NO_OP, op)
    factor = factors.gather(1, op.clamp(min=0).view(-1, 1)).squeeze(1)
    factor = torch.where(op == NO_OP, 1.0, factor).to(img.dtype).view(-1, 1, 1, 1)
    gray = _gray(img)
    op = op.view(-1, 1, 1, 1)
    target = torch.where(op == CONTRAST, gray.mean(dim=(1, 2, 3), keepdim=True), gray)
    target = torch.where(op == BRIGHTNESS, 0.0, target)
    return _blend(img, target, factor)
