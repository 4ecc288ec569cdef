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
        k: the number of clusters, if known (at least ``labels.max() + 1``): checked only; the
            result does not depend on it.
    """
    check_choice("mode", mode, UPSAMPLE_MODES)
    labels = int_tensor("labels", labels, (2, 3))
    single = labels.dim() == 2
    batch = labels[None] if single else labels
    height, width = check_size("size", size)
    if k is not None:
        cluster_count("k", batch, k)  # checked in either mode (it was ignored unchecked by "nearest")
    out = (_nearest if mode == "nearest" else _bilinear)(batch, height, width)
    return out[0] if single else out


def _nearest(labels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    # Integer index arithmetic keeps int64 labels exact (no float round trip) and is the
    # floor(i * h / H) that float scale factors only approximate.
    h, w = labels.shape[-2:]
    rows = torch.arange(height, device=labels.device) * h // height
    cols = torch.arange(width, device=labels.device) * w // width
    return labels[:, rows][:, :, cols]


BILINEAR_CHUNK = 16  # clusters upsampled at a time: memory O(16 B H W) floats, whatever k is


def _bilinear(labels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    # Each cluster's one-hot plane is upsampled on its own, so the planes are taken a chunk at a
    # time with a running maximum (the (B, k, H, W) stack of them held 3.7 GB for one label of
    # 1e5). Only the clusters present can win (an absent one weighs 0 everywhere); they are
    # visited in increasing order and a later one must weigh strictly more, so ties still go to
    # the lowest index, as argmax over the whole stack.
    present = torch.unique(labels)
    best = arg = None
    for start in range(0, len(present), BILINEAR_CHUNK):
        ids = present[start:start + BILINEAR_CHUNK]
        one_hot = (labels[:, None] == ids.view(1, -1, 1, 1)).float()
        weights = F.interpolate(one_hot, size=(height, width), mode="bilinear", align_corners=False)
        value, index = weights.max(1)
        index = ids[index]
        if best is None:
            best, arg = value, index
        else:
            better = value > best
            best, arg = torch.where(better, value, best), torch.where(better, index, arg)
    return arg
