"""A coloured label map over the grey-scale image, blended with OpenCV's ``addWeighted``
(SPEC.md section 3; the [Re] paper's rendering)."""
from __future__ import annotations

import numpy as np
import torch

from .._checks import check_nonnegative, describe
from ._checks import int_tensor
from .palette import colourise


def import_cv2():
    """OpenCV, imported on first use so that the rest of pyclr works without it."""
    try:
        import cv2
    except ImportError as exc:
        raise ImportError("pyclr.render needs OpenCV: pip install opencv-python-headless") from exc
    return cv2


def to_rgb_uint8(image, name: str = "image") -> np.ndarray:
    """``(3, H, W)`` or ``(H, W, 3)`` (channels first when the first dimension is 3), torch or
    numpy, uint8 or floating point in [0, 1] -> contiguous ``(H, W, 3)`` uint8 RGB."""
    if isinstance(image, torch.Tensor):
        if image.dtype in (torch.bfloat16, torch.float16):  # numpy has no bfloat16
            image = image.float()
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray) or image.ndim != 3 or 3 not in (image.shape[0], image.shape[-1]) \
            or image.size == 0:
        raise ValueError(f"{name}: expected a (3, H, W) or (H, W, 3) image, got {describe(image)}")
    if image.shape[0] == 3:
        image = image.transpose(1, 2, 0)
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"{name}: expected uint8 or floating point values, got {image.dtype}")
    low, high = float(image.min()), float(image.max())
    # a normalised (ImageNet mean/std) tensor passed by mistake lands here, not in a wrong picture
    if not (low >= 0.0 and high <= 1.0):
        raise ValueError(f"{name}: expected floating-point values in [0, 1], got {low:.3g}..{high:.3g}")
    return np.ascontiguousarray(np.rint(image * 255.0).astype(np.uint8))


def grey_rgb(image) -> np.ndarray:
    """The image in grey scale (OpenCV's RGB2GRAY: 0.299 R + 0.587 G + 0.114 B) as three
    equal channels, ``(H, W, 3)`` uint8."""
    cv2 = import_cv2()
    return cv2.cvtColor(cv2.cvtColor(to_rgb_uint8(image), cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def overlay(image, labels, colours, alpha: float = 0.4, beta: float = 0.4) -> np.ndarray:
    """``cv2.addWeighted(grey image, alpha, colour mask, beta, 0)``: ``(H, W, 3)`` uint8 RGB,
    each channel ``saturate(round(alpha * grey + beta * colour))``.

    Args:
        image: ``(3, H, W)`` or ``(H, W, 3)``, uint8 or float in [0, 1], torch or numpy.
        labels: ``(H, W)`` cluster indices at the image's size (see :func:`upsample_labels`).
        colours: one colour per cluster: ``(k,)`` palette indices (see
            :func:`consistent_colours`) or ``(k, 3)`` uint8 RGB values.
        alpha, beta: the weights of the grey image and of the colours (the [Re] paper's 0.4
            and 0.4 leave the image's structure visible under the colours).
    """
    cv2 = import_cv2()
    grey = grey_rgb(image)
    labels = int_tensor("labels", labels, (2,)).cpu()
    if tuple(labels.shape) != grey.shape[:2]:
        raise ValueError(f"labels: expected the image's (H, W) = {grey.shape[:2]}, got "
                         f"{tuple(labels.shape)} (upsample the label map first)")
    mask = _colour_mask(labels, colours)
    alpha, beta = check_nonnegative("alpha", alpha), check_nonnegative("beta", beta)
    return cv2.addWeighted(grey, alpha, mask, beta, 0.0)


def _colour_mask(labels: torch.Tensor, colours) -> np.ndarray:
    array = colours.detach().cpu().numpy() if isinstance(colours, torch.Tensor) else np.asarray(colours)
    if array.ndim == 2:  # explicit RGB values
        if array.shape[1] != 3 or array.dtype != np.uint8:
            raise ValueError(f"colours: expected (k,) palette indices or (k, 3) uint8 RGB values, "
                             f"got {describe(array)}")
        if int(labels.max()) >= len(array):
            raise ValueError(f"colours: expected one colour per cluster ({int(labels.max()) + 1}), "
                             f"got {len(array)}")
        return np.ascontiguousarray(array[labels.numpy()])
    return colourise(labels, array)
