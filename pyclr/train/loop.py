"""``pyclr.train``: the contrastive training loop.

Reproducible by construction: the data order of epoch ``e`` is a permutation drawn from
``(seed, e)`` and the augmentation of step ``s`` draws from ``(seed, s, rank)``, so a run
resumed from a checkpoint (saved every epoch and on interruption, mid-epoch included) takes
exactly the steps the uninterrupted run would have taken.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import signal
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .._checks import (check_bool, check_choice, check_device, check_int, check_nonnegative, check_options,
                       check_real, is_int, shown)
from ..losses import GeneralizedContrastiveLoss, NTXentLoss
from ..losses._checks import check_temperature
from ..models import ProjectionHead
from . import checkpoint as ckpt
from .distributed import DistributedContext, all_gather_no_grad, mean_over_ranks
from .moco import MoCo, check_moco_momentum
from .optim import OPTIMIZERS, SCHEDULES, default_lr, lr_multiplier, make_optimizer, set_lr

METHODS = ("simclr", "moco")
PRECISIONS = ("bf16", "fp16", "fp32")
SEED_MAX = 2 ** 63 - 1  # torch.manual_seed takes it; the epoch and step seeds are taken mod 2**63
# lr and weight_decay: past float32's range the optimizers' own arithmetic failed inside torch
# ("value cannot be converted to type float without overflow") after the run folder was written
MAX_RATE = 1e10
MAX_QUEUE = 1 << 24  # MoCo's queue of negatives: 16M x 128 floats is 8 GiB already
# Settings that change which steps a run takes: a checkpoint resumes only under the same ones.
# (A key that a checkpoint written before it existed lacks, and that _RUN_DEFAULTS does not
# fill in, is not compared: what that run used is unknown.)
_RUN_KEYS = ("method", "batch_size", "epochs", "seed", "optimizer", "lr", "weight_decay",
             "temperature", "warmup_epochs", "world_size", "schedule", "precision", "loss",
             "momentum", "moco_momentum", "queue_size", "dataset_size", "loss_settings")
# What a checkpoint written before a key existed ran with.
_RUN_DEFAULTS = {"schedule": "cosine"}


@dataclass
class TrainResult:
    encoder: nn.Module
    head: nn.Module
    history: list = field(default_factory=list)  # one dict per epoch (its loss: the mean over ranks)
    checkpoint_path: str | None = None


class _Net(nn.Module):
    """Encoder and head as one module, so DistributedDataParallel syncs both."""

    def __init__(self, encoder, head):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x):
        return self.head(self.encoder(x))


def train(encoder: nn.Module, dataset, *, loss: str | nn.Module = "nt_xent", method: str = "simclr",
          epochs: int = 100, batch_size: int = 256, optimizer: str = "lars", lr: float | None = None,
          weight_decay: float = 1e-6, temperature: float = 0.5, head: nn.Module | dict | None = None,
          augment: Callable | None = None, precision: str | None = None, device=None,
          out_dir: str | None = None, resume: bool = True, seed: int = 0,
          warmup_epochs: float | None = None, schedule: str = "cosine", momentum: float = 0.9,
          moco_momentum: float = 0.99,
          queue_size: int = 4096, num_workers: int = 0, compile: bool = False,
          channels_last: bool = False, progress: bool = True,
          callbacks: Sequence[Callable] = (), on_epoch_end: Callable | None = None) -> TrainResult:
    """Trains ``encoder`` (and a projection head) contrastively on ``dataset``.

    Args:
        encoder: a module mapping images to representations (``pyclr.models``; needs
            ``feature_dim`` when no head is given).
        dataset: items ``image`` or ``(image, labels)``; labels are not used.
        loss: ``"nt_xent"`` (fused NT-Xent at ``temperature``; negatives gathered across
            ranks when distributed), ``"generalized"`` (the hypersphere SWD loss; draws from
            the run's seed each step; under torchrun each rank's share on its own, with a
            warning) or a module ``loss(z1, z2) -> scalar``; its trainable parameters (a
            learnable temperature) are trained and checkpointed with the networks (one
            process only).
        method: ``"simclr"`` (negatives from the batch) or ``"moco"`` (momentum encoder and a
            queue of ``queue_size`` negatives; ``moco_momentum``; ``temperature``).
        batch_size: the global batch (split across ranks when distributed).
        optimizer: ``"lars"``, ``"sgd"`` or ``"adam"``; biases and normalisation parameters
            get no weight decay (and no LARS adaptation).
        lr: the base rate; default 0.3 x B/256 for LARS, 0.06 x B/256 for SGD, 1e-3 for Adam.
            Linear warm-up over ``warmup_epochs`` (default 10% of the run), then ``schedule``:
            ``"cosine"`` decay to 0, or ``"constant"``.
        head: a module, a dict of :class:`ProjectionHead` arguments, or None for SimCLR's
            (hidden = out of the encoder, 128 out, 2 layers).
        augment: ``augment(images, generator) -> images``, called once per view; None
            trains on the images as they are (both views equal: only the sprites
            experiment's "none" setting wants that).
        precision: ``"bf16"`` (default on a GPU), ``"fp16"`` (with loss scaling) or ``"fp32"``
            (default on the CPU): autocast's dtype.
        out_dir: where ``checkpoint.pt`` and ``metrics.jsonl`` go; None keeps nothing.
        resume: continue from ``out_dir/checkpoint.pt`` when there is one; ``False`` starts
            over and removes it at once (a run stopped before its first checkpoint would leave
            the old run's, for the next run to resume as its own).
        callbacks: ``cb(info)`` after each step, info = dict(step, epoch, loss, lr).
        on_epoch_end: ``fn(epoch, encoder) -> dict | None``; what it returns joins the history
            (e.g. a k-NN accuracy).

    A loss that is not finite raises ``FloatingPointError`` at its step; so does, at the end of
    an epoch and before its checkpoint, a weight or buffer that is not finite (a diverged run
    can keep a finite loss: collapsed features, BatchNorm variances of inf).
    """
    _check_choices(method, optimizer, precision, loss, schedule)
    (epochs, batch_size, seed, num_workers, queue_size, lr, weight_decay, temperature, warmup_epochs,
     momentum, moco_momentum, resume, compile, channels_last, progress) = check_scalar_options(dict(
        epochs=epochs, batch_size=batch_size, seed=seed, num_workers=num_workers,
        queue_size=queue_size, lr=lr, weight_decay=weight_decay, temperature=temperature,
        warmup_epochs=warmup_epochs, momentum=momentum, moco_momentum=moco_momentum,
        resume=resume, compile=compile, channels_last=channels_last, progress=progress)).values()
    callbacks = _check_arguments(encoder, dataset, augment, callbacks, on_epoch_end, out_dir)
    dist = DistributedContext.from_environment()
    device = check_device(device) if device is not None else dist.default_device()
    precision = precision or ("bf16" if device.type == "cuda" else "fp32")
    _warn_unused(method, optimizer, loss, momentum=momentum, temperature=temperature,
                 moco_momentum=moco_momentum, queue_size=queue_size)
    if dist.world_size > 1 and loss == "generalized":
        warnings.warn(f"loss='generalized' under torchrun ({dist.world_size} ranks): each rank compares its "
                      f"share of the batch ({batch_size // dist.world_size} of {batch_size} pairs) with the "
                      "prior on its own, nothing is gathered, so the objective depends on the number of "
                      "ranks (loss='nt_xent' gathers its negatives from every rank)", UserWarning, stacklevel=2)
    if batch_size % dist.world_size:
        raise ValueError(f"batch_size: expected a multiple of the world size {dist.world_size}, got {batch_size}")
    check_batch_size(batch_size, dataset, method=method, loss=loss)
    steps_per_epoch = len(dataset) // batch_size
    check_channels(encoder, dataset, "dataset")
    total_steps = epochs * steps_per_epoch
    warmup_epochs = 0.1 * epochs if warmup_epochs is None else warmup_epochs
    warmup_steps = max(1, round(warmup_epochs * steps_per_epoch)) if warmup_epochs > 0 else 0
    lr = default_lr(optimizer, batch_size) if lr is None else lr
    _warn_schedule(lr, warmup_epochs, epochs)
    config = dict(method=method, batch_size=batch_size, epochs=epochs, seed=seed, optimizer=optimizer,
                  lr=lr, weight_decay=weight_decay, temperature=temperature,
                  warmup_epochs=warmup_epochs, world_size=dist.world_size, precision=precision,
                  schedule=schedule, loss=loss if isinstance(loss, str) else type(loss).__name__,
                  momentum=None if optimizer == "adam" else momentum,  # None: the run ignores it
                  moco_momentum=moco_momentum if method == "moco" else None,
                  queue_size=queue_size if method == "moco" else None, dataset_size=len(dataset),
                  # a loss module's settings (its extra_repr): NTXentLoss(temperature=0.2) resumed as 0.5
                  loss_settings=loss.extra_repr() if isinstance(loss, nn.Module) else None)

    loss_fn = _make_loss(loss, temperature, dist.world_size > 1)
    trained_loss = _trained_loss(loss_fn, dist.world_size, device)
    torch.manual_seed(seed)  # the head's initialisation
    head = _make_head(head, encoder)
    encoder.to(device), head.to(device)
    if channels_last:
        encoder.to(memory_format=torch.channels_last)
    net = dist.wrap(_Net(encoder, head), device)
    run = torch.compile(net) if compile else net
    opt = make_optimizer(optimizer, [encoder, head, *trained_loss], lr, weight_decay, momentum)
    moco = MoCo(encoder, head, queue_size, moco_momentum, temperature).to(device) if method == "moco" else None
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    if out_dir is not None and dist.is_main:
        _check_writable(out_dir)
    path = os.path.join(out_dir, ckpt.CHECKPOINT) if out_dir else None
    if path and not resume and dist.is_main and os.path.exists(path):
        # starting over: a run stopped before its first checkpoint left the old one in place,
        # which the next (resuming) run took for its own
        os.remove(path)
    step, history, partial = 0, [], None
    if path and resume and os.path.exists(path):
        step, history, partial = _restore(path, config, encoder, head, opt, scaler, moco, loss_fn)
    log = _MetricsLog(out_dir if dist.is_main else None, history)
    # the epoch under way: its step losses and time so far (a checkpoint taken mid-epoch keeps
    # them, so the resumed epoch's record covers all its steps)
    losses, started = [], time.perf_counter()  # one loss a step: len(losses) steps so far

    def state():
        return {"encoder": encoder.state_dict(), "head": head.state_dict(), "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict(), "moco": moco.state_dict() if moco else None,
                "loss": loss_fn.state_dict() if isinstance(loss_fn, nn.Module) else None,
                "step": step, "history": history, "config": config,
                "partial": {"losses": list(losses), "seconds": time.perf_counter() - started}}

    autocast = autocast_for(device, precision)
    watched = _finite_tensors(encoder=encoder, head=head, loss=trained_loss)
    net.train()
    bar = _ProgressBar(progress and dist.is_main, total_steps, step, batch_size, epochs)
    try:
        with _sigterm_as_interrupt():
            # an epoch ends with its record: one interrupted after its last step (in on_epoch_end,
            # say) is finished by the resumed run, which then has every epoch's record
            while step < total_steps or _unrecorded(step, history):
                epoch, done = _epoch_under_way(step, history, steps_per_epoch)
                started, losses = time.perf_counter(), []
                if partial is not None and done:  # resumed within the epoch or before its record
                    losses, started = list(partial["losses"]), started - partial["seconds"]
                partial = None
                batches = _EpochBatches(len(dataset), batch_size, seed, epoch, done, dist)
                loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, collate_fn=_images)
                bar.start_epoch(epoch)
                for images in loader:
                    set_lr(opt, lr * lr_multiplier(schedule, step, total_steps, warmup_steps))
                    images = images.to(device, non_blocking=True)
                    gen = torch.Generator(device=images.device).manual_seed(_step_seed(seed, step, dist.rank))
                    x1, x2 = (images, images) if augment is None else (augment(images, gen), augment(images, gen))
                    _check_views(x1, x2, images)
                    if channels_last:
                        x1, x2 = (x.contiguous(memory_format=torch.channels_last) for x in (x1, x2))
                    # Ctrl-C or SIGTERM is held until the step is whole: between MoCo's enqueue
                    # or the optimizer's update and step += 1, a checkpoint would pair the new
                    # state with the old step (a resumed run would then take that step twice)
                    with ckpt.signals_deferred():
                        with autocast:
                            z1, z2 = run(torch.cat([x1, x2])).chunk(2)
                            if moco is not None:
                                gather = all_gather_no_grad if dist.world_size > 1 else None
                                value = moco.loss(z1, z2, x1, x2, gather=gather)
                            elif isinstance(loss_fn, GeneralizedContrastiveLoss):
                                draws = torch.Generator().manual_seed(_step_seed(seed, step, 0))
                                value = loss_fn(z1.float(), z2.float(), generator=draws)
                            else:
                                value = loss_fn(z1, z2)
                        loss_value = _finite_value(value, step)
                        opt.zero_grad(set_to_none=True)
                        scaler.scale(value).backward()
                        scaler.step(opt)
                        scaler.update()
                        if moco is not None:
                            moco.update(encoder, head)
                        step += 1
                        losses.append(loss_value)
                    info = {"step": step, "epoch": epoch, "loss": loss_value, "lr": opt.param_groups[0]["lr"]}
                    bar.step(loss_value, info["lr"])
                    for cb in callbacks:
                        cb(info)
                bar.refresh()
                record = _epoch_record(epoch, step, losses, opt, started, len(losses) * batch_size)
                if dist.world_size > 1:  # each rank's loss is the mean over its rows: so is the batch's
                    record["loss"] = mean_over_ranks(record["loss"], device)
                if on_epoch_end is not None:
                    record.update(_plain_values(on_epoch_end(epoch, encoder) or {}))
                _check_finite_state(epoch, step, watched)
                history.append(record)
                log.write(record)
                if path and dist.is_main:
                    ckpt.save_atomic(state(), path)
    except KeyboardInterrupt:
        if path and dist.is_main:
            ckpt.save_atomic(state(), path)
        raise
    finally:
        bar.close()
        log.close()
    return TrainResult(encoder, head, history, path)


def _optional(check):
    return lambda name, value: None if value is None else check(name, value)


# train()'s scalar options, each with its check (name, value) -> the plain value.
_SCALAR_CHECKS = {
    "epochs": lambda name, v: check_int(name, v, 1),
    "batch_size": lambda name, v: check_int(name, v, 1),
    "seed": lambda name, v: check_int(name, v, 0, SEED_MAX),
    "num_workers": lambda name, v: check_int(name, v, 0),
    "queue_size": lambda name, v: check_int(name, v, 1, MAX_QUEUE),
    "lr": _optional(lambda name, v: check_real(name, v, 0, MAX_RATE)),
    "weight_decay": lambda name, v: check_real(name, v, 0, MAX_RATE),
    "temperature": lambda name, v: check_temperature(v),
    "warmup_epochs": _optional(check_nonnegative),
    "momentum": lambda name, v: check_real(name, v, 0, 1),
    "moco_momentum": lambda name, v: check_moco_momentum(v),
    "resume": check_bool, "compile": check_bool, "channels_last": check_bool, "progress": check_bool,
}


def check_scalar_options(options: dict) -> dict:
    """train()'s scalar options among ``options`` checked, as plain values, in their order."""
    return {name: _SCALAR_CHECKS[name](name, value) if name in _SCALAR_CHECKS else value
            for name, value in options.items()}


def check_train_values(options: dict) -> None:
    """The values of train()'s choices and scalar options among ``options`` (a config's train
    section; pyclr.train.presets.check_config checks its keys)."""
    defaults = inspect.signature(train).parameters
    _check_choices(*(options.get(k, defaults[k].default)
                     for k in ("method", "optimizer", "precision", "loss", "schedule")))
    check_scalar_options(options)


def _check_arguments(encoder, dataset, augment, callbacks, on_epoch_end, out_dir) -> tuple:
    """train()'s other arguments, before anything is built; ``callbacks`` as a tuple."""
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder: expected an nn.Module, got {type(encoder).__name__}")
    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
        raise TypeError(f"dataset: expected a sized, indexable dataset (len() and [i]), "
                        f"got {type(dataset).__name__}")
    check_augment(augment)
    if callable(callbacks) or isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__"):
        raise TypeError(f"callbacks: expected a list of callables cb(info), got {shown(callbacks)}")
    callbacks = tuple(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks: expected callables cb(info), got {shown(cb)} among them")
    if on_epoch_end is not None and not callable(on_epoch_end):
        raise TypeError(f"on_epoch_end: expected a callable fn(epoch, encoder) or None, got {shown(on_epoch_end)}")
    if out_dir is not None and not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir: expected a folder path or None, got {shown(out_dir)}")
    return callbacks


def check_augment(augment) -> None:
    if augment is not None and not callable(augment):
        raise TypeError(f"augment: expected a callable augment(images, generator) or None, got {shown(augment)}")


def _warn_unused(method, optimizer, loss, **options) -> None:
    """A warning for each option given a value other than its default that this run ignores
    (a sweep may pass one dict to every method, so not an error; but silence misleads)."""
    unused = {"momentum": optimizer == "adam" and "optimizer='adam' has no momentum",
              "temperature": method == "simclr" and loss != "nt_xent"
              and f"loss={loss if isinstance(loss, str) else type(loss).__name__!r} takes no temperature",
              "moco_momentum": method != "moco" and f"method={method!r} has no momentum encoder",
              "queue_size": method != "moco" and f"method={method!r} has no queue"}
    defaults = inspect.signature(train).parameters
    for name, why in unused.items():
        if why and options[name] != defaults[name].default:
            warnings.warn(f"{name}={options[name]!r} is ignored: {why}", UserWarning, stacklevel=3)


def _warn_schedule(lr, warmup_epochs, epochs) -> None:
    """A warning for a rate schedule that cannot be what was meant (legal, so not an error)."""
    if lr == 0:
        warnings.warn("lr=0: the weights never change (every optimizer's step, weight decay "
                      "included, scales with the rate)", UserWarning, stacklevel=3)
    elif warmup_epochs > epochs:
        warnings.warn(f"warmup_epochs={warmup_epochs!r} is longer than the run (epochs={epochs}): the "
                      f"rate never reaches lr={lr!r}", UserWarning, stacklevel=3)


def _check_choices(method, optimizer, precision, loss, schedule):
    check_choice("method", method, METHODS)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    if precision is not None:
        check_choice("precision", precision, PRECISIONS)
    check_choice("schedule", schedule, SCHEDULES)
    if isinstance(loss, type):  # NTXentLoss, not NTXentLoss(): called as NTXentLoss(z1, z2)
        raise TypeError(f"loss: expected a loss module instance, got the class {loss.__name__} "
                        f"(pass {loss.__name__}(...))")
    if isinstance(loss, str) and loss not in ("nt_xent", "generalized"):
        raise ValueError(f"loss: expected 'nt_xent', 'generalized' or a loss module, got {loss!r}")
    if not isinstance(loss, str) and not callable(loss):
        raise TypeError(f"loss: expected 'nt_xent', 'generalized' or a loss module, got {shown(loss)}")
    if method == "moco" and loss != "nt_xent":
        raise ValueError("loss: MoCo uses its own InfoNCE with the queue; leave loss='nt_xent'")


def check_batch_size(batch_size: int, dataset, name: str = "batch_size", method: str = "simclr",
                     loss="nt_xent") -> None:
    """An epoch is ``len(dataset) // batch_size`` steps: at least one; and NT-Xent in the batch
    (SimCLR) needs two pairs: with one, a row's only other row is its positive, the loss is 0
    and nothing is learned (under torchrun the negatives are gathered: the global batch counts)."""
    if batch_size > len(dataset):
        raise ValueError(f"{name}: {batch_size} is larger than the dataset ({len(dataset)} items)")
    if method == "simclr" and (loss == "nt_xent" or isinstance(loss, NTXentLoss)) and batch_size < 2:
        raise ValueError(f"{name}: expected at least 2 for NT-Xent, got {batch_size} (with one pair a row's only "
                         "other row is its positive: the loss is 0 and nothing is learned)")


def check_channels(encoder: nn.Module, dataset, name: str, hint: str = "") -> None:
    """Before any training: ``dataset``'s images must have the channels ``encoder`` takes
    (its ``in_channels``, as pyclr's encoders have); reads one item. ``hint`` ends the message."""
    expected = getattr(encoder, "in_channels", None)
    if expected is None or len(dataset) == 0:
        return
    image = _image_of(dataset[0])
    if isinstance(image, torch.Tensor) and image.dim() == 3 and image.shape[0] != expected:
        raise ValueError(f"{name}: items have {image.shape[0]} channels, but the encoder takes {expected} "
                         f"(its in_channels){hint}")


def _check_writable(out_dir) -> None:
    """Before any training: a run that cannot save its checkpoint should not start."""
    try:
        os.makedirs(out_dir, exist_ok=True)
        probe = os.path.join(out_dir, ".pyclr-write-test")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"out_dir: {out_dir!r} is not writable ({exc.strerror})") from exc


def _make_head(head, encoder) -> nn.Module:
    if isinstance(head, nn.Module):
        return head
    dim = getattr(encoder, "feature_dim", None)
    if not is_int(dim):
        raise ValueError("head: give a head module, or an encoder with an int feature_dim")
    options = {"in_dim": int(dim), "hidden_dim": int(dim), "out_dim": 128, "num_layers": 2}
    if head is not None:
        if not isinstance(head, dict):
            raise TypeError(f"head: expected a module, a dict of ProjectionHead arguments or None, got {type(head).__name__}")
        check_options("head", ProjectionHead, head)
        options.update(head)
    return ProjectionHead(**options)


def _make_loss(loss, temperature, distributed):
    if loss == "nt_xent":
        return NTXentLoss(temperature=temperature, gather_distributed=distributed)
    if loss == "generalized":
        return GeneralizedContrastiveLoss(prior="hypersphere", distribution="swd")
    return loss  # a callable: _check_choices saw to it


_CHECKPOINT_KEYS = ("encoder", "head", "optimizer", "scaler", "step", "history")  # state() writes them


def _trained_loss(loss_fn, world_size, device) -> list:
    """``[loss_fn]`` when it is a module with trainable parameters (a learnable temperature):
    the optimizer trains them with the networks and checkpoints keep them (they were left
    untrained); ``[]`` otherwise. A loss module goes to ``device`` either way."""
    if not isinstance(loss_fn, nn.Module):
        return []
    loss_fn.to(device)
    if not any(p.requires_grad for p in loss_fn.parameters()):
        return []
    if world_size > 1:
        raise ValueError("loss: a loss module with trainable parameters is not supported under torchrun "
                         "(its gradients would not be averaged across ranks); freeze them or train on one process")
    return [loss_fn]


def _restore(path, config, encoder, head, opt, scaler, moco, loss_fn):
    saved = ckpt.load(path)
    missing = [k for k in _CHECKPOINT_KEYS if not isinstance(saved, dict) or k not in saved]
    if missing or not isinstance(saved.get("config", {}), dict):
        raise ValueError(f"resume: {path} is not a pyclr training checkpoint (no {', '.join(missing) or 'config'}); "
                         "use another out_dir or resume=False")
    before = saved.get("config", {})
    changed = [f"{k}: {before.get(k, _RUN_DEFAULTS.get(k))!r} -> {config.get(k)!r}" for k in _RUN_KEYS
               if (k in before or k in _RUN_DEFAULTS) and before.get(k, _RUN_DEFAULTS.get(k)) != config.get(k)]
    if changed:
        raise ValueError(f"resume: {path} was written by a run with other settings ({', '.join(changed)}); "
                         "use another out_dir or resume=False")
    step, history = saved["step"], saved["history"]
    total = config["epochs"] * (config["dataset_size"] // config["batch_size"])
    if (not is_int(step) or not 0 <= step <= total or not isinstance(history, list)
            or not all(isinstance(record, dict) for record in history)):  # a hand-edited or foreign file
        raise ValueError(f"resume: {path} holds no step in 0..{total} and list of epoch records (step {step!r}); "
                         "use another out_dir or resume=False")
    modules = [("encoder", encoder), ("head", head)]
    if isinstance(loss_fn, nn.Module) and saved.get("loss") is not None:  # None: written before it was kept
        modules.append(("loss", loss_fn))
    for name, module in modules:
        try:
            module.load_state_dict(saved[name])
        except RuntimeError as exc:
            raise ValueError(f"resume: the {name} in {path} does not fit the {name} given "
                             f"(another model?): {str(exc).splitlines()[0]}") from exc
    opt.load_state_dict(saved["optimizer"])
    scaler.load_state_dict(saved["scaler"])
    if moco is not None:
        moco.load_state_dict(saved["moco"])
    partial = saved.get("partial")  # absent in checkpoints written before it was kept
    return step, history, partial if isinstance(partial, dict) else None


def _plain_values(metrics: dict) -> dict:
    """on_epoch_end's metrics with numpy scalars and one-element tensors as Python numbers:
    the history goes into metrics.jsonl and into checkpoints, which are read back with
    torch.load(weights_only=True) (no numpy globals)."""
    if not isinstance(metrics, dict):
        raise TypeError(f"on_epoch_end: expected it to return a dict or None, got {type(metrics).__name__}")
    plain = {k: v.item() if isinstance(v, np.generic) or isinstance(v, torch.Tensor) and v.numel() == 1 else v
             for k, v in metrics.items()}
    for k, v in plain.items():
        if not isinstance(k, str):
            raise TypeError(f"on_epoch_end: expected str keys, got {k!r}")
        if k in _RECORD_KEYS:
            raise ValueError(f"on_epoch_end: {k!r} is the epoch record's own key; name the metric otherwise")
        try:
            json.dumps(v)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"on_epoch_end: {k!r} is a {type(v).__name__}, which metrics.jsonl cannot hold "
                            "(return numbers, strings, bools, None, or lists and dicts of them)") from exc
    return plain


class _EpochBatches:
    """The global batches of one epoch (a seeded permutation, last partial batch dropped),
    from batch ``start`` on, each cut to this rank's contiguous share."""

    def __init__(self, n, batch_size, seed, epoch, start, dist):
        # one int64 tensor of the order; a batch's Python list only when it is drawn (a list of
        # every index costs ~36 bytes an item: 46 MB an epoch of ImageNet)
        self.order = torch.randperm(n, generator=torch.Generator().manual_seed(_epoch_seed(seed, epoch)))
        self.local = batch_size // dist.world_size
        self.offsets = range(start * batch_size + dist.rank * self.local, (n // batch_size) * batch_size, batch_size)

    def __iter__(self):
        return (self.order[i: i + self.local].tolist() for i in self.offsets)

    def __len__(self):
        return len(self.offsets)


def autocast_for(device: torch.device, precision: str):
    """The autocast context of a precision ("bf16", "fp16"; "fp32" turns it off)."""
    return torch.autocast(device.type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16,
                          enabled=precision != "fp32")


def _image_of(item):
    """An item's image: the item itself, or the first of an (image, labels) pair."""
    return item[0] if isinstance(item, (tuple, list)) and item else item


def _images(items):
    first = items[0]
    images = [_image_of(item) for item in items]
    if not isinstance(images[0], torch.Tensor):
        raise TypeError(f"dataset: expected items that are an image tensor or (image, labels), got {type(first).__name__}")
    for image in images[1:]:  # torch.stack's own message names no argument
        if not isinstance(image, torch.Tensor) or image.shape != images[0].shape or image.dtype != images[0].dtype:
            got = f"{image.dtype} of shape {tuple(image.shape)}" if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"dataset: expected images of one shape and dtype to batch, got "
                             f"{images[0].dtype} of shape {tuple(images[0].shape)} and {got} (ImageFolder and "
                             f"NaturalImages: pass size=)")
    return torch.stack(images)


def _epoch_seed(seed, epoch):
    return (seed * 1_000_003 + epoch) % 2**63


def _step_seed(seed, step, rank):
    return (seed * 1_000_003 ** 2 + step * 1_009 + rank + 1) % 2**63


def _check_views(x1, x2, images) -> None:
    """The augment's two views: tensors of the batch's size and one shape (a view of fewer
    images paired every later row with another image's view, silently)."""
    for x in (x1, x2):
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[0] != images.shape[0]:
            got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"augment: expected a tensor of the batch's {images.shape[0]} images, got {got}")
    if x1.shape != x2.shape:
        raise ValueError(f"augment: expected both views of one shape, got {tuple(x1.shape)} and {tuple(x2.shape)}")


def _finite_tensors(**modules) -> list:
    """``(name, key, tensor)`` for the floating-point parameters, and the buffers finite at the
    start (a mask of -inf is one by design), of ``modules`` (a module or a list of them)."""
    watched = []
    for name, parts in modules.items():
        for part in parts if isinstance(parts, (list, tuple)) else [parts]:
            params = {id(p) for p in part.parameters()}
            for key, value in part.state_dict(keep_vars=True).items():
                if isinstance(value, torch.Tensor) and value.is_floating_point() and (
                        id(value) in params or bool(value.isfinite().all())):
                    watched.append((name, key, value))
    return watched


def _check_finite_state(epoch, step, watched) -> None:
    """Before an epoch's record and checkpoint: the ``watched`` weights and buffers finite. A
    diverged run can keep a finite loss (collapsed features, BatchNorm running variances of
    inf): it would be saved, reported and resumed as a success."""
    for name, key, value in watched:
        if not bool(value.detach().isfinite().all()):
            raise FloatingPointError(
                f"{name}: {key} is not finite after epoch {epoch} (step {step}); the run diverged "
                "(lower the learning rate); no record or checkpoint was written for this epoch")


def _finite_value(value, step) -> float:
    """The loss as a float, read once per step (the one device sync of a step): the NaN check,
    the callbacks and the epoch's mean share it."""
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        got = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"loss: expected the loss to return a single value (a scalar tensor), got {got}; "
                         "a per-row loss needs reduction='mean'")
    if not value.requires_grad and torch.is_grad_enabled():
        raise ValueError("loss: its value does not depend on the embeddings (no gradient): expected "
                         "loss(z1, z2) computed from z1 and z2")
    loss = value.item()
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"loss: not finite at step {step} ({loss}); lower the learning rate or use precision='fp32'")
    return loss


_RECORD_KEYS = ("epoch", "step", "loss", "lr", "images_per_s", "time_s")  # _epoch_record's


def _unrecorded(step: int, history: list) -> bool:
    """Whether steps were taken since the last epoch record (or, from the start, any)."""
    return step > (history[-1].get("step", step) if history else 0)


def _epoch_under_way(step: int, history: list, steps_per_epoch: int) -> tuple:
    """``(epoch, its steps already taken)``: the epoch the loop goes on with. At an epoch's end
    without its record (interrupted in on_epoch_end, say), that epoch, all its steps taken. By
    the last record's step, not the number of records: a checkpoint of the older loop, which
    lost such a record, must not get the next one twice."""
    if step % steps_per_epoch == 0 and _unrecorded(step, history):  # (never at step 0)
        return step // steps_per_epoch - 1, steps_per_epoch
    return step // steps_per_epoch, step % steps_per_epoch


def _epoch_record(epoch, step, losses, opt, started, images):
    elapsed = time.perf_counter() - started
    return {"epoch": epoch, "step": step, "loss": torch.tensor(losses).mean().item() if losses else math.nan,
            "lr": opt.param_groups[0]["lr"], "images_per_s": images / elapsed if elapsed > 0 else math.nan,
            "time_s": elapsed}


class _ProgressBar:
    """tqdm over the whole run, counted in images: its rate is images/s and its ETA the run's;
    the postfix holds the epoch's mean loss so far and the learning rate. It shows values the
    step has already read to the host (the loss's one sync per step), so it costs no device
    sync; tqdm redraws at most every 0.1 s, and at each epoch's end. Without tqdm: nothing."""

    def __init__(self, enabled: bool, total_steps: int, step: int, batch_size: int, epochs: int):
        self.bar, self.epochs = None, epochs
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        # unit_scale=batch_size: counts (and the rate) in images, while update(1) is a step.
        epoch = min(step * epochs // total_steps, epochs - 1)
        self.bar = tqdm(total=total_steps, initial=step, unit="img", unit_scale=batch_size, leave=False,
                        dynamic_ncols=True, desc=f"epoch {epoch + 1}/{epochs}")

    def start_epoch(self, epoch: int) -> None:
        self.loss_sum, self.count = 0.0, 0
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch + 1}/{self.epochs}", refresh=False)

    def step(self, loss: float, lr: float) -> None:
        if self.bar is None:
            return
        self.loss_sum, self.count = self.loss_sum + loss, self.count + 1
        self.bar.set_postfix(loss=f"{self.loss_sum / self.count:.4f}", lr=f"{lr:.3g}", refresh=False)
        self.bar.update(1)

    def refresh(self) -> None:
        if self.bar is not None:
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _json_line(record: dict) -> str:
    """One line of strict JSON: a metric that is NaN or infinite (an on_epoch_end's) is null;
    json.dumps wrote bare NaN tokens, which strict JSON readers refuse."""
    plain = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    return json.dumps(plain) + "\n"


class _MetricsLog:
    """metrics.jsonl (one line per epoch) and TensorBoard scalars when it is installed. The
    file starts from ``history`` (a resumed run's epochs so far, from its checkpoint), so it
    always matches the checkpoint: an epoch logged but not saved (the run stopped between the
    two) is not listed twice."""

    def __init__(self, out_dir, history):
        self.file = self.writer = None
        if out_dir is None:
            return
        os.makedirs(out_dir, exist_ok=True)
        self.file = open(os.path.join(out_dir, "metrics.jsonl"), "w")
        for record in history:
            self.file.write(_json_line(record))
        self.file.flush()
        with contextlib.suppress(Exception):  # tensorboard is optional
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(out_dir)

    def write(self, record):
        if self.file:
            self.file.write(_json_line(record))
            self.file.flush()
        if self.writer:
            for k, v in record.items():
                if k not in ("epoch", "step") and isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, record["step"])

    def close(self):
        for f in (self.file, self.writer):
            if f is not None:
                f.close()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler's kill) saves a checkpoint like Ctrl-C does."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
