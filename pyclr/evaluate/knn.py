"""Weighted k-nearest-neighbour accuracy on cosine similarity: a cheap monitor in training."""
from __future__ import annotations

import torch

from .._checks import check_int, check_positive
from .features import as_features, unit_rows


@torch.no_grad()
def knn_accuracy(train_features, train_labels, test_features, test_labels, *, k: int = 200,
                 temperature: float = 0.1, chunk: int = 1024, label: str | None = None) -> float:
    """Top-1 accuracy of a k-NN vote (Wu et al. 2018): each test point's ``k`` most
    cosine-similar training points vote for their class with weight ``exp(sim / temperature)``.
    ``chunk`` test rows are compared at a time, so memory is O(chunk x n_train). ``label``
    names the label to vote on when the labels are a dict (``extract_features`` of items with
    several), as in :func:`pyclr.evaluate.linear_probe`."""
    x, y = as_features(train_features, train_labels, label=label, batch_size=256, device=None, name="train_features",
                       min_rows=1)
    tx, ty = as_features(test_features, test_labels, label=label, batch_size=256, device=None, name="test_features",
                         min_rows=1)
    if tx.shape[1] != x.shape[1]:
        raise ValueError(f"test_features: expected {x.shape[1]} columns like train_features, got {tx.shape[1]}")
    k, chunk = check_int("k", k, 1), check_int("chunk", chunk, 1)
    temperature = check_positive("temperature", temperature)
    # cosine similarity at any scale, in float64 for float64 features (float32 ties near-parallel rows)
    dtype = torch.promote_types(torch.promote_types(x.dtype, tx.dtype), torch.float32)
    x, tx = unit_rows(x, dtype), unit_rows(tx.to(x.device), dtype)
    # votes go to the classes present, not to every id up to the largest (sparse ids stay cheap)
    classes, index = torch.unique(torch.cat([y, ty.to(y.device)]), return_inverse=True)
    y, ty = index[:len(y)], index[len(y):]
    k = min(k, len(y))
    correct = 0
    for start in range(0, len(ty), chunk):
        sims, idx = (tx[start:start + chunk] @ x.T).topk(k, dim=1)
        votes = torch.zeros(len(idx), len(classes), dtype=sims.dtype, device=x.device)
        # exp((s - s_max) / T): the nearest neighbour weighs 1, so no temperature overflows
        votes.scatter_add_(1, y[idx], ((sims - sims[:, :1]) / temperature).exp())
        correct += votes.argmax(1).eq(ty[start:start + chunk]).sum().item()
    return correct / len(ty)
