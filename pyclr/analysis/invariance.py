"""The invariance measure of Purushwalkam & Gupta (2020, supplement A), after Goodfellow et al.
(2009): how reliably units that fire for a class keep firing across the transformed views of
that class's instances."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .._checks import check_int
from ._checks import check_activations, check_class_labels


class Invariance(NamedTuple):
    score: float                # I(f): the per-class top-K means, averaged over classes
    per_class: torch.Tensor     # (C,) the mean of each class's top-K unit scores
    unit_scores: torch.Tensor   # (C, D) I_y(i) = L_y(i) / G_y(i), G_y(i) = P(y)
    local_rate: torch.Tensor    # (C, D) L_y(i)
    global_rate: torch.Tensor   # (C, D) the measured rate over all views: P(y), less where ties hold views back
    thresholds: torch.Tensor    # (C, D) the per-class firing thresholds t_y(i)
    top_k: int


@torch.no_grad()
def invariance_score(views: torch.Tensor, labels, *, top_k: int | None = None) -> Invariance:
    """The invariance of units (columns) of a representation to the transformations that made
    ``views`` (n, V, D): D unit activations of V transformed views of each of n instances,
    labelled by ``labels`` (n,) with classes ``0..C-1``.

    For class y and unit i (SPEC.md section 5):

    - the threshold ``t_y(i)`` makes the unit fire (activation > t) on a fraction
      ``P(y)`` (the share of instances of class y) of all n·V views: the global firing rate
      ``G_y(i) = P(y)``, so a unit can fire on exactly the views of class y;
    - the local firing rate ``L_y(i)`` is the fraction of the views of class y's instances
      (their local trajectories) on which the unit fires;
    - ``I_y(i) = L_y(i) / G_y(i)``; a unit that fires on every view of class y and nothing
      else scores ``1 / P(y)``, one that ignores the input (or the class) scores about 1.

    ``I(f)`` is the mean over classes of the mean of each class's ``top_k`` largest
    ``I_y(i)`` (Eq. 3). Neither supplement states K; the default is 1% of the units (at
    least 1). Where activations tie at the threshold (ReLU zeros: a unit that is 0 on most
    views), fewer than ``P(y)`` of the views can fire; ``I_y`` still divides by ``P(y)``, the
    rate the threshold is meant to give, so such a unit scores by the share of class y's
    views it fires on (dividing by the measured rate, ``global_rate``, gave a unit firing on
    a few views of class y only the maximum ``1 / P(y)``). A unit that never fires scores 0.
    Classes with no instance are left out of the average.
    """
    x = check_activations("views", views, 3, "(n, V, D)")
    n, v, d = x.shape
    y = check_class_labels("labels", labels, (n,), x.device)
    k = max(1, math.ceil(d / 100)) if top_k is None else check_int("top_k", top_k, 1, d)
    classes = int(y.max()) + 1
    counts = torch.bincount(y, minlength=classes)
    present = counts > 0
    flat = x.reshape(n * v, d).double()
    ordered = flat.sort(0).values                                  # (n·V, D) ascending per unit
    firing_views = torch.round(counts.double() / n * (n * v)).long()  # P(y)·n·V views fire
    # The threshold is the value just below the top firing_views activations of each unit.
    below = (n * v - firing_views - 1).clamp(min=-1)
    thresholds = torch.where(below.view(-1, 1) >= 0, ordered[below.clamp(min=0)],
                             torch.full((classes, d), -math.inf, dtype=torch.float64, device=x.device))
    per_view_class = y.repeat_interleave(v)
    global_rate = torch.zeros(classes, d, dtype=torch.float64, device=x.device)
    local_rate = torch.zeros_like(global_rate)
    for c in torch.nonzero(present).flatten().tolist():  # one class at a time: (n·V, D) booleans
        fires = flat > thresholds[c]
        global_rate[c] = fires.double().mean(0)
        local_rate[c] = fires[per_view_class == c].double().mean(0)
    unit_scores = local_rate / (counts.double() / n).clamp(min=1e-300)[:, None]  # G_y(i) = P(y)
    per_class = unit_scores.topk(k, dim=1).values.mean(1)
    score = per_class[present].mean().item()
    return Invariance(score, per_class.float(), unit_scores.float(), local_rate.float(), global_rate.float(),
                      thresholds.to(x.dtype), k)
