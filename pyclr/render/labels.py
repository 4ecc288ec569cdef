"""Label maps upsampled from the feature map to the image (SPEC.md section 3, rendering)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .._checks import check_choice, check_size
from ._checks import cluster_count, int_tensor

UPSAMPLE_MODES = ("nearest", "bilinear")


def upsample_labels(labels, size, mode: str = "nearest", k: Optional[int] = None) -> torch.Tensor:
    """``(B, h, w)`` (or ``(h, w)``) integer labels -> ``(B, H, W)`` (or ``(H, W)``) int64 labels.

    Args:
        labels: cluster indices in ``[0, k)``, torch or numpy.
        size: ``(H, W)`` or one int for a square image.
        mode: ``"nearest"``: output pixel ``(i, j)`` takes the label of source pixel
            ``(floor(i h / H), floor(j w / W))`` (OpenCV's INTER_NEAREST and torch's
            ``"nearest"``, in exact integer arithmetic), so an integer factor repeats each
            label; ``"bilinear"``: the one-hot assignment ``(B, k, h, w)`` is upsampled
            bilinearly (``align_corners=False``) and each pixel takes the cluster of largest
            weight (the lowest index on ties), which smooths the blocky borders.
        k: clusters (bilinear only); default ``labels.max() + 1``.
    """
    check_choice("mode", mode, UPSAMPLE_MODES)
    labels = int_tensor("labels", labels, (2, 3))
    single = labels.dim() == 2
    batch = labels[None] if single else labels
    height, width = check_size("size", size)
    if mode == "nearest":
        out = _nearest(batch, height, width)
    else:
        out = _bilinear(batch, height, width, cluster_count("k", batch, k))
    return out[0] if single else out


def _nearest(labels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    # Integer index arithmetic keeps int64 labels exact (no float round trip) and is the
    # floor(i * h / H) that float scale factors only approximate.
    h, w = labels.shape[-2:]
    rows = torch.arange(height, device=labels.device) * h // height
    cols = torch.arange(width, device=labels.device) * w // width
    return labels[:, rows][:, :, cols]


def _bilinear(labels: torch.Tensor, height: int, width: int, k: int) -> torch.Tensor:
    one_hot = F.one_hot(labels, k).permute(0, 3, 1, 2).float()
    weights = F.interpolate(one_hot, size=(height, width), mode="bilinear", align_corners=False)
    return weights.argmax(1)
