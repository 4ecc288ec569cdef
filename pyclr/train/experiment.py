"""Runs a configuration end to end: train, then a linear probe of the trained encoder beside a
randomly initialised one; everything lands in the run folder."""
from __future__ import annotations

import contextlib
import inspect
import json
import os
import time

import torch

from ..evaluate import extract_features, linear_probe
from ..evaluate.features import pick_label
from . import checkpoint as ckpt
from .distributed import DistributedContext
from .loop import _check_writable, check_batch_size, check_channels, train
from .presets import build_augment, build_dataset, build_encoder, build_head, device_of, resolve_config

CONFIG = "config.json"
# Config keys (or sections) that may change between a run and its resumption: the data loader
# changes how it runs, not what it computes, the eval section only reads the result, and the
# description is a note (a preset's may be reworded by a pyclr upgrade).
RESUME_FREE = frozenset({"train.num_workers", "eval", "description"})
REPORT = "report.json"


def run_experiment(config, out_dir: str, *, device=None, resume: bool = True, progress: bool = True,
                   baseline: bool = True) -> dict:
    """Trains as ``config`` says (a preset name, a file or a dict; see pyclr.train.presets),
    probes the result, and returns (and writes to ``out_dir/report.json``) the report:
    settings, last epoch's metrics, probe accuracy of the trained and of a random encoder.
    Under torchrun every rank trains; rank 0 alone writes the folder's config and report and
    runs the probes (the other ranks return the report without them)."""
    cfg = resolve_config(config)  # every section's keys checked
    dist = DistributedContext.from_environment()  # under torchrun: rank 0 writes, probes and reports
    device = dist.default_device() if device is None else device_of(device)
    seed = cfg["train"].get("seed", 0)
    torch.manual_seed(seed)
    encoder = build_encoder(cfg["encoder"])
    dataset = build_dataset(cfg["dataset"])
    check_channels(encoder, dataset, "dataset", "; set encoder.in_channels to match")
    defaults = inspect.signature(train).parameters
    check_batch_size(cfg["train"].get("batch_size", defaults["batch_size"].default), dataset, "train.batch_size",
                     cfg["train"].get("method", defaults["method"].default),
                     cfg["train"].get("loss", defaults["loss"].default))
    eval_sets = eval_datasets(cfg, encoder)  # an eval set the probe cannot use fails now, not after training
    augment = build_augment(cfg.get("augment"))
    head = build_head(cfg.get("head"), encoder)
    if resume:
        check_resumable(out_dir, cfg)
    if dist.is_main:  # atomically: other ranks may be reading it in check_resumable
        _check_writable(out_dir)
        if not resume:  # starting over: the old run's report no longer describes the folder (train
            # removes its checkpoint), so a run stopped early leaves no report of another run
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(out_dir, REPORT))
        ckpt.write_atomic(os.path.join(out_dir, CONFIG), lambda f: json.dump(cfg, f, indent=1), mode="w")
    started = time.perf_counter()
    result = train(encoder, dataset, augment=augment, head=head, out_dir=out_dir, device=device,
                   resume=resume, progress=progress, **cfg["train"])
    report = {"config": cfg, "train_time_s": time.perf_counter() - started, "epochs": len(result.history),
              "last_epoch": result.history[-1] if result.history else None, "device": str(device),
              "world_size": dist.world_size}
    if not dist.is_main:
        return report  # without the probe: rank 0's report.json has it
    if cfg.get("eval"):
        report["probe_accuracy"] = probe(cfg, result.encoder, device, eval_sets)
        if baseline:
            torch.manual_seed(seed + 1)
            report["random_encoder_probe_accuracy"] = probe(cfg, build_encoder(cfg["encoder"]).to(device), device,
                                                            eval_sets)
    with open(os.path.join(out_dir, REPORT), "w") as f:
        json.dump(report, f, indent=1)
    return report


def check_resumable(out_dir: str, cfg: dict) -> None:
    """A run folder with a checkpoint resumes only under the config it was started with:
    train() compares its own settings, but a changed encoder option, dataset, augmentation or
    head would otherwise continue silently from weights trained on something else (the eval
    section may change: it only reads the result)."""
    path = os.path.join(out_dir, CONFIG)
    if not (os.path.exists(os.path.join(out_dir, ckpt.CHECKPOINT)) and os.path.exists(path)):
        return
    changed = config_changes(read_run_config(path), cfg, free=RESUME_FREE)
    if changed:
        raise ValueError(f"resume: {out_dir} holds a run started with another config ({'; '.join(changed)}); "
                         "use another out dir, or start over (--no-resume / resume=False)")


def config_changes(before: dict, now: dict, free=frozenset()) -> list[str]:
    """``"section.key: old -> new"`` for every key whose value differs between two configs,
    sorted; keys and sections named in ``free`` aside. ``now`` is compared as its config.json
    would hold it (tuples as lists)."""
    now = json.loads(json.dumps(now))
    old, new = ({k: v for k, v in _flatten(c).items() if k not in free and k.split(".")[0] not in free}
                for c in (before, now))
    differ = sorted(k for k in old.keys() | new.keys() if k not in old or k not in new or old[k] != new[k])
    return [f"{key}: {_shown(old, key)} -> {_shown(new, key)}" for key in differ]


def _shown(values: dict, key: str) -> str:
    return repr(values[key]) if key in values else "(unset)"


def _flatten(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def eval_datasets(cfg: dict, encoder) -> dict:
    """The eval section's datasets by split (``{}`` without one), each checked on its first
    item: images with the encoder's channels, and labels that carry ``eval.label``."""
    spec = cfg.get("eval") or {}
    sets = {}
    for split in ("train", "test"):
        if spec.get(split):
            name = f"eval.{split}"
            sets[split] = build_dataset(spec[split], name)
            check_channels(encoder, sets[split], name,
                           "; build the eval sets like the training set (e.g. the same bits)")
            check_label(sets[split], spec.get("label"), name)
    return sets


def check_label(dataset, label, name: str) -> None:
    """``dataset``'s items are ``(image, labels)`` whose labels include ``label`` (reads one item)."""
    if len(dataset) == 0:
        raise ValueError(f"{name}: the dataset is empty")
    item = dataset[0]
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise ValueError(f"{name}: expected items (image, labels) for the probe, got {type(item).__name__}")
    try:
        value = pick_label(item[1], label, "eval.label")
    except ValueError as exc:
        raise ValueError(f"{exc} (the labels of {name}'s items)") from exc
    if not _is_class(value):  # e.g. a multi-hot or a position: the probe failed after training
        classes = [k for k, v in item[1].items() if _is_class(v)] if isinstance(item[1], dict) else []
        picked = label or (next(iter(item[1])) if isinstance(item[1], dict) else "label")
        raise ValueError(f"eval.label: the probe needs one integer class per item; {name}'s items carry "
                         f"{picked} = {_shown_label(value)}"
                         + (f" (class labels: {', '.join(classes)})" if classes else ""))


def _is_class(value) -> bool:
    """One integer class: an int, a numpy integer or a 0-d integer tensor (not a bool)."""
    try:
        value = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        return False
    return value.dim() == 0 and not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool)


def _shown_label(value) -> str:
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        return f"{'an' if dtype[0] in 'aeiou' else 'a'} {dtype} tensor of shape {tuple(value.shape)}"
    return repr(value) if len(repr(value)) <= 40 else type(value).__name__


def probe(cfg: dict, encoder, device, datasets: dict | None = None) -> float:
    """The configuration's linear evaluation: train split -> held-out split (or 20% of it).
    ``datasets``: the eval sets already built (:func:`eval_datasets`), else built here."""
    spec = cfg["eval"]
    datasets = datasets or eval_datasets(cfg, encoder)
    label = spec.get("label")
    x, labels = extract_features(encoder, datasets["train"], device=device)
    y = pick_label(labels, label)
    if "test" in datasets:
        tx, test_labels = extract_features(encoder, datasets["test"], device=device)
        return linear_probe(x, y, tx, pick_label(test_labels, label)).accuracy
    return linear_probe(x, y).accuracy


def read_run_config(path: str) -> dict:
    """A run folder's config.json, a dict, or a ValueError naming the file."""
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"config: cannot read {path} ({exc})") from exc
    if not isinstance(cfg, dict):
        raise ValueError(f"config: {path} holds a {type(cfg).__name__}, not a pyclr run config")
    return cfg


def load_run_encoder(run_dir: str):
    """``(encoder, config, checkpoint)`` of a run folder: the encoder its ``config.json`` names,
    with the weights of its ``checkpoint.pt``."""
    path = os.path.join(run_dir, CONFIG)
    if not os.path.exists(path):
        raise ValueError(f"run_dir: {run_dir!r} has no {CONFIG} (was it written by pyclr train?)")
    cfg = read_run_config(path)
    if not isinstance(cfg.get("encoder"), dict) or "name" not in cfg["encoder"]:
        raise ValueError(f"checkpoint: {path} names no encoder (no encoder.name)")
    weights = os.path.join(run_dir, ckpt.CHECKPOINT)
    saved = ckpt.load(weights)
    if not isinstance(saved, dict) or "encoder" not in saved:
        raise ValueError(f"checkpoint: {weights} holds no encoder weights")
    try:  # a hand-edited encoder section: named with the file, as the other sections are
        encoder = build_encoder(cfg["encoder"])
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"config: {path}: {exc}") from exc
    try:
        encoder.load_state_dict(saved["encoder"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint: the weights do not fit the encoder of {path}: "
                         f"{str(exc).splitlines()[0]}") from exc
    return encoder, cfg, saved


def evaluate_run(run_dir: str, *, device=None) -> dict:
    """``pyclr eval``: the probe of the encoder in ``run_dir/checkpoint.pt``."""
    encoder, cfg, saved = load_run_encoder(run_dir)
    try:  # a hand-edited config.json: every section checked, as `pyclr train` checks it
        cfg = resolve_config(cfg)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"config: {os.path.join(run_dir, CONFIG)}: {exc}") from exc
    if not cfg.get("eval"):
        raise ValueError(f"run_dir: the configuration in {os.path.join(run_dir, CONFIG)} has no eval section")
    device = device_of(device)
    return {"step": saved.get("step"), "probe_accuracy": probe(cfg, encoder.to(device), device)}
