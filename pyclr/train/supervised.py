"""``pyclr.train.train_supervised``: the supervised baseline of the controlled experiments.

An encoder and one linear classifier per label, trained together with cross-entropy (Adam,
cosine decay of the rate). Intriguing Properties (Tables 3 and 4) sets supervised ResNets
beside SimCLR ones; their linear probes are then read the same way as SimCLR's.

Labels: each item is ``(image, labels)`` with labels an int/tensor or a dict of them (see
:func:`pyclr.evaluate.features.pick_label`). A label is either a class per item (an int) or a
set of classes per item: a 1-D integer tensor padded with -1 (MultiDigit's ``digits``), whose
target is the distribution of its classes (soft cross-entropy; a prediction counts as right
when it is one of them). Reproducible like :func:`pyclr.train.train`: the order of epoch
``e`` is a permutation drawn from ``(seed, e)``, the augmentation of step ``s`` from
``(seed, s)``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..evaluate.features import pick_label
from .._checks import check_bool, check_choice, check_int, check_nonnegative, check_positive, is_int
from .distributed import DistributedContext
from .loop import (PRECISIONS, SEED_MAX, _EpochBatches, _finite_value, _ProgressBar, _step_seed, autocast_for,
                   check_augment)
from .optim import lr_multiplier, make_optimizer, set_lr
from .presets import device_of

BARE = "label"  # the classifier's name when the items carry a bare label (label=None)


@dataclass
class SupervisedResult:
    encoder: nn.Module
    classifiers: dict  # label name -> nn.Linear(feature_dim, num_classes)
    history: list = field(default_factory=list)  # one dict per epoch: loss, lr, train_accuracy per label


def train_supervised(encoder: nn.Module, dataset, *, label: str | Sequence[str] | None,
                     num_classes: int | dict | None = None, epochs: int, batch_size: int = 256,
                     lr: float = 1e-3, weight_decay: float = 1e-6, augment: Callable | None = None,
                     precision: str | None = None, device=None, seed: int = 0,
                     progress: bool = False) -> SupervisedResult:
    """Trains ``encoder`` with a linear classifier per label on ``dataset``.

    Args:
        encoder: a module mapping images to ``(B, feature_dim)`` (needs an int ``feature_dim``).
        dataset: items ``(image, labels)``; labels an int/tensor or a dict of them.
        label: the label to learn (a key of the items' dict; None for a bare label or a dict
            with one key), or a list of them: one classifier each, their losses summed.
        num_classes: classes per label: an int for all, a dict ``{label: int}``, or None to
            read them off the dataset (the largest class + 1: one pass over every item).
        epochs, batch_size: the run's length and batch (the last partial batch is dropped).
        lr: AdamW's base rate, decayed to 0 along a cosine; ``weight_decay`` (decoupled) spares
            biases and normalisation parameters.
        augment: ``augment(images, generator) -> images``, once per batch; None trains on the
            images as they are.
        precision: ``"bf16"`` (default on a GPU), ``"fp16"`` or ``"fp32"`` (default on the CPU).
        device: where to train (default: the GPU when there is one); the encoder stays there.
        seed: the classifiers' initialisation, the data order and the augmentation draws.

    Returns a :class:`SupervisedResult`; the encoder is back in the train/eval mode it had.
    """
    names = _check_labels(label)
    _check_args(encoder, dataset, precision, augment)
    epochs, batch_size = check_int("epochs", epochs, 1), check_int("batch_size", batch_size, 1)
    seed, progress = check_int("seed", seed, 0, SEED_MAX), check_bool("progress", progress)
    lr, weight_decay = check_positive("lr", lr), check_nonnegative("weight_decay", weight_decay)
    steps_per_epoch = len(dataset) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size: {batch_size} is larger than the dataset ({len(dataset)} items)")
    classes = _num_classes(num_classes, names, dataset)
    device = device_of(device)
    precision = precision or ("bf16" if device.type == "cuda" else "fp32")

    torch.manual_seed(seed)  # the classifiers' initialisation
    classifiers = {_key(n): nn.Linear(encoder.feature_dim, classes[_key(n)]) for n in names}
    was_training = encoder.training
    encoder.to(device).train()
    for c in classifiers.values():
        c.to(device)
    opt = make_optimizer("adam", [encoder, *classifiers.values()], lr, weight_decay)
    autocast = autocast_for(device, precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    total, step, history = epochs * steps_per_epoch, 0, []
    bar = _ProgressBar(progress, total, 0, batch_size, epochs)
    try:
        for epoch in range(epochs):
            started, losses, hits, seen = time.perf_counter(), [], dict.fromkeys(classifiers, 0), 0
            bar.start_epoch(epoch)
            for images, labels in _loader(dataset, batch_size, seed, epoch):
                set_lr(opt, lr * lr_multiplier("cosine", step, total, 0))
                images = images.to(device, non_blocking=True)
                if augment is not None:
                    generator = torch.Generator(device=images.device).manual_seed(_step_seed(seed, step, 0))
                    images = augment(images, generator)
                targets = {_key(n): _targets(pick_label(labels, n), _key(n), classes[_key(n)], device) for n in names}
                loss, logits = _step(encoder, classifiers, images, targets, opt, scaler, autocast, step)
                losses.append(loss)
                bar.step(loss, opt.param_groups[0]["lr"])
                step, seen = step + 1, seen + len(images)
                for k in classifiers:  # a tensor sum: no device sync per step
                    hits[k] = hits[k] + _hits(logits[k], targets[k][1])
            history.append({"epoch": epoch, "step": step, "loss": sum(losses) / len(losses),
                            "lr": opt.param_groups[0]["lr"], "time_s": time.perf_counter() - started,
                            "train_accuracy": {k: float(hits[k]) / seen for k in classifiers}})
            bar.refresh()
    finally:
        bar.close()
        encoder.train(was_training)
    for c in classifiers.values():
        c.eval()
    return SupervisedResult(encoder, classifiers, history)


def _step(encoder, classifiers, images, targets, opt, scaler, autocast, step) -> tuple:
    """One optimisation step: the summed cross-entropies; returns (loss, detached logits)."""
    with autocast:
        features = encoder(images)
    logits = {k: classifiers[k](features.float()) for k in classifiers}  # the classifiers in fp32
    value = sum(F.cross_entropy(logits[k], targets[k][0]) for k in classifiers)
    loss = _finite_value(value, step)
    opt.zero_grad(set_to_none=True)
    scaler.scale(value).backward()
    scaler.step(opt)
    scaler.update()
    return loss, {k: v.detach() for k, v in logits.items()}


def _key(name: str | None) -> str:
    return BARE if name is None else name


def _check_labels(label) -> tuple:
    """``label`` as a tuple of names (None stands for the bare label)."""
    if label is None or isinstance(label, str):
        return (label,)
    if not isinstance(label, (list, tuple)) or not label or not all(isinstance(n, str) for n in label):
        raise TypeError(f"label: expected a label name, None or a non-empty list of names, got {label!r}")
    if len(set(label)) != len(label):
        raise ValueError(f"label: expected distinct names, got {list(label)}")
    return tuple(label)


def _check_args(encoder, dataset, precision, augment) -> None:
    check_augment(augment)
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder: expected an nn.Module, got {type(encoder).__name__}")
    dim = getattr(encoder, "feature_dim", None)
    if not is_int(dim) or dim < 1:
        raise ValueError(f"encoder: expected an int feature_dim (the width of its output), got {dim!r}")
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise TypeError(f"dataset: expected a dataset of (image, labels) items, got {type(dataset).__name__}")
    first = dataset[0] if len(dataset) else None
    if first is not None and not (isinstance(first, (tuple, list)) and len(first) == 2
                                  and isinstance(first[0], torch.Tensor)):
        raise TypeError(f"dataset: expected items (image tensor, labels), got a {type(first).__name__}")
    if precision is not None:
        check_choice("precision", precision, PRECISIONS)


def _num_classes(num_classes, names, dataset) -> dict:
    """``{label key: classes}`` from an int, a dict or (None) a pass over the dataset."""
    keys = [_key(n) for n in names]
    if num_classes is None:
        return _classes_in(dataset, names)
    if isinstance(num_classes, dict):
        missing = [k for k in keys if k not in num_classes]
        if missing:
            raise ValueError(f"num_classes: no entry for {', '.join(map(repr, missing))} (expected keys {keys})")
        return {k: check_int(f"num_classes[{k!r}]", num_classes[k], 2) for k in keys}
    return dict.fromkeys(keys, check_int("num_classes", num_classes, 2))


def _classes_in(dataset, names) -> dict:
    seen = {}
    for _, labels in DataLoader(dataset, batch_size=512):
        for n in names:
            top = int(_as_class_tensor(pick_label(labels, n), _key(n)).max())
            seen[_key(n)] = max(seen.get(_key(n), -1), top)
    for key, top in seen.items():
        if top < 1:
            raise ValueError(f"label: {key!r} has fewer than 2 classes in the dataset; give num_classes")
    return {k: top + 1 for k, top in seen.items()}


def _as_class_tensor(values, key: str) -> torch.Tensor:
    values = torch.as_tensor(values)
    if values.is_floating_point() or values.dtype == torch.bool or values.dim() not in (1, 2):
        raise ValueError(f"label: {key!r} must be an int class per item or a -1-padded 1-D set of classes, "
                         f"got a batch of dtype {values.dtype} and shape {tuple(values.shape)}")
    return values


def _targets(values, key: str, classes: int, device) -> tuple:
    """(cross-entropy target, (B, classes) mask of right answers) of one label's batch."""
    values = _as_class_tensor(values, key).to(device)
    valid = values >= 0
    if (values >= classes).any() or (values.dim() == 1 and not valid.all()):
        raise ValueError(f"label: {key!r} has classes outside 0..{classes - 1} "
                         f"(got {values.min().item()}..{values.max().item()}); check num_classes")
    if values.dim() == 1:
        return values.long(), F.one_hot(values.long(), classes).bool()
    if not valid.any(1).all():
        raise ValueError(f"label: {key!r} has an item whose set of classes is empty (all -1)")
    counts = torch.zeros(len(values), classes, device=device).scatter_add_(1, values.clamp(min=0).long(),
                                                                         valid.float())
    return counts / counts.sum(1, keepdim=True), counts > 0


def _hits(logits: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """How many rows' top-1 class is one of their right classes."""
    return right.gather(1, logits.argmax(1, keepdim=True)).sum()


def _loader(dataset, batch_size, seed, epoch) -> DataLoader:
    """Epoch ``epoch``'s batches: pyclr.train's seeded permutation, one process."""
    return DataLoader(dataset, batch_sampler=_EpochBatches(len(dataset), batch_size, seed, epoch, 0,
                                                           DistributedContext()))
