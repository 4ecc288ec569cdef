"""Linear evaluation: multinomial logistic regression on frozen features, full batch."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from .._checks import as_sequence, check_device, check_int, check_real, is_real, shown
from ..data._util import check_class_ids
from .features import as_features


@dataclass
class ProbeResult:
    """A fitted probe: held-out and training top-1 accuracy, the chosen weight decay, and
    the classifier on the original (unstandardised) features: ``logits = x @ weight.T + bias``.
    ``validation_accuracy``: with several decays, each one's accuracy on the validation split
    that chose among them (``{decay: accuracy}``; empty with one decay), which shows whether
    the choice sat at an end of the grid and how flat the choice was. ``iterations``: the
    L-BFGS iterations of the final fit; ``converged``: whether it stopped on its tolerances
    rather than on ``max_iter`` (or L-BFGS's own limit of 1.25 x ``max_iter`` loss evaluations)."""

    accuracy: float
    train_accuracy: float
    weight_decay: float
    weight: torch.Tensor
    bias: torch.Tensor
    n_train: int
    n_test: int
    validation_accuracy: dict = field(default_factory=dict)
    iterations: int = 0
    converged: bool = True

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted class of each row of ``x`` ``(n, d)``, features as the probe was fitted on."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a tensor of features, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.weight.shape[1]:
            raise ValueError(f"x: expected shape (n, {self.weight.shape[1]}), got {tuple(x.shape)}")
        return (x.to(self.weight) @ self.weight.T + self.bias).argmax(1)


def linear_probe(features, labels=None, test_features=None, test_labels=None, *,
                 label: str | None = None, test_fraction: float = 0.2,
                 weight_decay: float | Sequence[float] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2),
                 max_iter: int = 200, seed: int = 0, device=None, batch_size: int = 256) -> ProbeResult:
    """Top-1 accuracy of a logistic-regression probe on frozen features.

    Args:
        features: ``(n, d)`` features, or an ``(encoder, dataset)`` pair whose encoder
            output is probed (``label`` names the dataset's label; see
            :func:`pyclr.evaluate.extract_features`).
        labels: ``(n,)`` integer classes, or the dict of them that ``extract_features``
            returns for items with several labels (``label`` names one); not with an
            ``(encoder, dataset)`` pair.
        test_features, test_labels: a held-out set; without one, a seeded ``test_fraction``
            of the rows is held out.
        weight_decay: the L2 penalty (on the mean loss, standardised features; 0 to 1e6,
            where the weights are ~1e-6 already), or several:
            then each is fitted on the training rows less a seeded 20% validation split, and
            the one most accurate there (ties: the larger) is refitted on them all. Each
            decay's validation accuracy is kept in ``ProbeResult.validation_accuracy``. The
            default grid 1e-6 … 1e-2 was checked against 3e-2 … 1 on features of random and
            briefly trained encoders and raw pixels (500 to 4,000 training rows): the best
            larger decay beat the grid's best by 0 to 1.7 points of held-out accuracy, but
            selecting on the wider grid lost 0.2 points on average (on noisy features its
            choice follows the validation split's noise). Pass a wider grid to search further.
        max_iter: the most L-BFGS iterations of a fit; a final fit that stops there before
            converging warns (``RuntimeWarning``) and says so in ``ProbeResult.converged``.
        device: where to fit (default: the features' device; a GPU fits in seconds).

    Features are standardised with the training rows' mean and standard deviation (a column
    constant on them is set to 0; see :func:`fit_logistic` for the floors); the fit is
    full-batch L-BFGS in float32, deterministic for a given input.
    """
    max_iter = check_int("max_iter", max_iter, 1)
    decays = _check_decays(weight_decay)
    seed = check_int("seed", seed, 0, 2 ** 63 - 2)  # seed + 1 seeds a torch generator
    x, y = as_features(features, labels, label=label, batch_size=batch_size, device=device, name="features")
    if (test_features is None) != (test_labels is None) and not isinstance(test_features, tuple):
        raise ValueError("test_features and test_labels: expected both or neither")
    if test_features is not None:
        tx, ty = as_features(test_features, test_labels, label=label, batch_size=batch_size,
                             device=device, name="test_features", min_rows=1)
        if tx.shape[1] != x.shape[1]:
            raise ValueError(f"test_features: expected {x.shape[1]} columns like features, got {tx.shape[1]}")
    else:
        (x, y), (tx, ty) = split(x, y, _check_fraction(test_fraction), seed)
    device = check_device(device) if device is not None else x.device
    x, y, tx, ty = (t.to(device) for t in (x, y, tx, ty))
    largest, test_largest = int(y.max()), int(ty.max())
    num_classes = max(largest, test_largest) + 1  # W has a row per id up to the largest
    held_out = test_largest > largest and test_labels is not None
    check_class_ids("test_labels" if held_out else "labels", num_classes - 1, len(y) + len(ty))
    if len(decays) > 1 and len(y) < 2:
        raise ValueError(f"weight_decay: choosing among {len(decays)} decays holds out 20% of the training rows "
                         f"for validation, and there is {len(y)}: pass one weight_decay, or more rows")
    scores = {} if len(decays) == 1 else _validation_scores(x, y, num_classes, decays, max_iter, seed)
    chosen = max(scores, key=lambda wd: (scores[wd], wd)) if scores else decays[0]  # ties: stronger
    w, b, iterations, converged = fit_logistic(x, y, num_classes, chosen, max_iter)
    if not converged:
        warnings.warn(f"linear_probe: the fit (weight_decay={chosen:g}) reached its limit (max_iter={max_iter}) "
                      f"before converging; pass a larger max_iter", RuntimeWarning, stacklevel=2)
    return ProbeResult(accuracy=_accuracy(tx, ty, w, b), train_accuracy=_accuracy(x, y, w, b),
                       weight_decay=chosen, weight=w, bias=b, n_train=len(y), n_test=len(ty),
                       validation_accuracy=scores, iterations=iterations, converged=converged)


def split(x, y, fraction: float, seed: int):
    """A seeded random split: ``((x_train, y_train), (x_held, y_held))``, ``fraction`` held out."""
    n = len(y)
    held = max(1, min(n - 1, round(n * fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(x.device)
    return (x[order[held:]], y[order[held:]]), (x[order[:held]], y[order[:held]])


# float32 features whose largest |value| is in this range are standardised in float32 with
# an absolute spread floor of 1e-6, as pyclr always did (committed results stay bit-exact),
# unless a column under the floor is not exactly its float32 mean (a constant 98765.4 is
# not: its mean's rounding over 1e-6 would be a feature of size 7800 that stalls L-BFGS);
# those, others and float64 features take the float64 path of _column_moments.
_PLAIN_RANGE = (1e-3, 1e15)
MAX_DECAY = 1e6


def fit_logistic(x, y, num_classes, weight_decay, max_iter):
    """Multinomial logistic regression, ``mean CE + weight_decay/2 |W|^2``, by L-BFGS on
    standardised features; returns (weight, bias, iterations, converged): the classifier for
    the original features (float64 for float64 features, else float32), the L-BFGS
    iterations, and whether the fit stopped on its tolerances rather than on its limits.

    Ordinary float32 (or half) features, largest |value| in 1e-3..1e15, are standardised in
    float32, where every column whose spread is below 1e-6 is exactly constant (such a column
    becomes 0). Others, and float64 features, take their columns' mean and spread in float64
    (in row chunks: no float64 copy of the features) after an exact power-of-two rescaling,
    so features of any magnitude (1e20 in float32, 1e-300 in float64) fit as their
    standardised values do; there each column is standardised on its own spread, and one
    whose spread is within 8 ulps (of the features' dtype) of its own largest |value|
    (rounding, not data) is constant and becomes 0, as does its weight. The features' own graph is not followed, and the fit
    runs also under ``torch.no_grad()`` or ``torch.inference_mode()``."""
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.detach()
    largest = torch.linalg.vector_norm(x, ord=math.inf).item()  # max |x| without an abs copy
    plain = work == torch.float32 and _PLAIN_RANGE[0] <= largest <= _PLAIN_RANGE[1]
    if plain:
        x32 = x.float()
        mean, std = x32.mean(0), x32.std(0, unbiased=False)
        floored = std < 1e-6
        plain = not bool(floored.any()) or bool((x32[:, floored] == mean[floored]).all())
        std = std.clamp_min(1e-6)
    if not plain:
        mean, std, scale = _column_moments(x, largest)
    with torch.inference_mode(False), torch.enable_grad():
        # a new tensor made here is an ordinary one (an inference tensor cannot be saved for backward)
        if plain:
            xs = (x32 - mean) / std
        else:  # / scale first: exact, and 3e38 - (-3e38) would overflow
            xs = x.to(work).div(scale.to(work)).sub_(mean.to(work)).div_(std.to(work)).float()
        y = y.clone()
        w = torch.zeros(num_classes, x.shape[1], device=x.device, requires_grad=True)
        b = torch.zeros(num_classes, device=x.device, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20,
                                tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(xs @ w.T + b, y) + 0.5 * weight_decay * w.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        state, group = opt.state[w], opt.param_groups[0]
        iterations = state["n_iter"]
        converged = iterations < max_iter and state["func_evals"] < group["max_eval"]
        if not converged:  # a limit stopped it (torch checks them first): at an optimum all the same?
            loss = closure().item()
            gradient = max(w.grad.abs().max().item(), b.grad.abs().max().item())
            converged = (gradient <= group["tolerance_grad"]
                         or abs(loss - state.get("prev_loss", math.inf)) < group["tolerance_change"])
    if plain:
        w, b = w.detach() / std, b.detach()
        return w, b - w @ mean, iterations, converged
    w = w.detach().double() / std  # for x / scale
    return (w / scale).to(work), (b.detach().double() - w @ mean).to(work), iterations, converged


def _column_moments(x, largest: float, rows: int = 16384):
    """Float64 column means and spreads of ``x / scale`` (``scale``: the power of two at or
    below ``largest`` = max |x|, an exact rescaling). A column whose spread is at most 8 ulps
    of ``x``'s dtype at its own largest |value| is constant (what varies is rounding): its
    spread is returned as inf, so it standardises to 0 instead of rounding noise standardised
    to +-1."""
    scale = torch.tensor(2.0 ** math.floor(math.log2(largest)) if largest > 0 else 1.0,
                         dtype=torch.float64, device=x.device)
    chunks = x.split(rows)
    mean = sum((chunk.double() / scale).sum(0) for chunk in chunks) / len(x)
    var = sum(((chunk.double() / scale - mean) ** 2).sum(0) for chunk in chunks) / len(x)
    peak = torch.stack([torch.linalg.vector_norm(chunk, ord=math.inf, dim=0) for chunk in chunks]).amax(0)
    std = var.sqrt()
    rounding = 8 * torch.finfo(x.dtype).eps  # a few of the features' own ulps
    std = std.masked_fill(std <= rounding * (peak.double() / scale), math.inf)
    return mean, std, scale


def _validation_scores(x, y, num_classes, decays, max_iter, seed) -> dict:
    """``{decay: accuracy}`` on a seeded 20% validation split of the training rows."""
    (fx, fy), (vx, vy) = split(x, y, 0.2, seed + 1)
    return {wd: _accuracy(vx, vy, *fit_logistic(fx, fy, num_classes, wd, max_iter)[:2]) for wd in decays}


def _accuracy(x, y, w, b) -> float:
    return (x.to(w.dtype) @ w.T + b).argmax(1).eq(y).sum().item() / len(y)  # exact counts, any n


def _check_fraction(value) -> float:
    return check_real("test_fraction", value, 0, 1, inclusive=False)


def _check_decays(weight_decay) -> list:
    if is_real(weight_decay):
        return [_check_decay(weight_decay)]
    decays = as_sequence(weight_decay)  # np.logspace(...) too
    if not decays:
        raise TypeError(f"weight_decay: expected a finite number >= 0 or a non-empty list of them, "
                        f"got {shown(weight_decay)}")
    return [_check_decay(v) for v in decays]


def _check_decay(value) -> float:
    # on standardised features a decay of 1e6 leaves weights of ~1e-6 already; past ~1e21
    # L-BFGS's first step overflowed the float32 penalty and the probe came back NaN
    return check_real("weight_decay", value, 0, MAX_DECAY)
