"""Weighted k-nearest-neighbour accuracy on cosine similarity: a cheap monitor in training."""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from .features import as_features


@torch.no_grad()
def knn_accuracy(train_features, train_labels, test_features, test_labels, *, k: int = 200,
                 temperature: float = 0.1, chunk: int = 1024, label: str | None = None) -> float:
    """Top-1 accuracy of a k-NN vote (Wu et al. 2018): each test point's ``k`` most
    cosine-similar training points vote for their class with weight ``exp(sim / temperature)``.
    ``chunk`` test rows are compared at a time, so memory is O(chunk x n_train). ``label``
    names the label to vote on when the labels are a dict (``extract_features`` of items with
    several), as in :func:`pyclr.evaluate.linear_probe`."""
    x, y = as_features(train_features, train_labels, label=label, batch_size=256, device=None, name="train_features")
    tx, ty = as_features(test_features, test_labels, label=label, batch_size=256, device=None, name="test_features")
    if tx.shape[1] != x.shape[1]:
        raise ValueError(f"test_features: expected {x.shape[1]} columns like train_features, got {tx.shape[1]}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected an int >= 1, got {k!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0:
        raise ValueError(f"temperature: expected a number > 0, got {temperature!r}")
    k = min(k, len(y))
    x, tx = F.normalize(x.float(), dim=1), F.normalize(tx.float().to(x.device), dim=1)
    ty = ty.to(x.device)
    num_classes = int(max(y.max().item(), ty.max().item())) + 1
    correct = 0
    for start in range(0, len(ty), chunk):
        sims, idx = (tx[start:start + chunk] @ x.T).topk(k, dim=1)
        votes = torch.zeros(len(idx), num_classes, device=x.device)
        votes.scatter_add_(1, y[idx], (sims / temperature).exp())
        correct += votes.argmax(1).eq(ty[start:start + chunk]).sum().item()
    return correct / len(ty)
