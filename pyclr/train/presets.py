"""Named experiment settings and run configurations.

A configuration is a plain dict (JSON or YAML on disk):

    {"encoder": {"name": "resnet18", "cifar_stem": true},
     "dataset": {"name": "cifar10", "root": "data/"},
     "augment": {"policy": "simclr_cifar", "size": 32},
     "head": {"hidden_dim": 512, "out_dim": 128, "num_layers": 2},      (optional)
     "train": {"epochs": 500, "batch_size": 512, "temperature": 0.5, ...},  (pyclr.train options)
     "eval": {"train": {"name": "cifar10", "root": "data/"},
              "test": {"name": "cifar10", "root": "data/", "train": false},  (optional)
              "label": "label"}}

``{"preset": NAME, ...}`` starts from a preset and overrides it key by key.
"""
from __future__ import annotations

import copy
import json
import os

import torch
from torch import nn

SECTIONS = ("encoder", "dataset", "augment", "head", "train", "eval", "description", "preset")

PRESETS = {
    "demo": {
        "description": "SimCLR with a small ConvNet on MultiDigit canvases of one embedded MNIST "
                       "digit (28x28): under a minute on 2 CPU cores",
        "encoder": {"name": "small_convnet", "in_channels": 1, "input_size": 28},
        "dataset": {"name": "multidigit", "n_digits": 1, "canvas": 28, "size": 4096, "seed": 0},
        "augment": {"policy": "simclr_cifar", "size": 28, "crop_scale": [0.5, 1.0], "jitter_strength": 1.0},
        "head": {"hidden_dim": 128, "out_dim": 64, "num_layers": 2},
        # Adam trains this small network faster than LARS at batch 256 (measured: probe 0.91
        # after 4 epochs against 0.81 with LARS at lr 0.3).
        "train": {"epochs": 4, "batch_size": 256, "optimizer": "adam", "lr": 3e-3, "temperature": 0.5,
                  "weight_decay": 1e-5, "warmup_epochs": 1},
        "eval": {"train": {"name": "multidigit_eval", "canvas": 28, "size": 3000, "seed": 1, "train": True},
                 "test": {"name": "multidigit_eval", "canvas": 28, "size": 1000, "seed": 2, "train": False},
                 "label": "label"},
    },
    "simclr_cifar10": {
        "description": "SimCLR on CIFAR-10, ResNet-18 with the CIFAR stem (the [Re] paper's setting); "
                       "needs dataset.root",
        "encoder": {"name": "resnet18", "cifar_stem": True},
        "dataset": {"name": "cifar10", "root": None},
        "augment": {"policy": "simclr_cifar", "size": 32},
        "head": {"hidden_dim": 512, "out_dim": 128, "num_layers": 2},
        "train": {"epochs": 500, "batch_size": 512, "optimizer": "lars", "temperature": 0.5,
                  "weight_decay": 1e-6},
        "eval": {"train": {"name": "cifar10", "root": None}, "test": {"name": "cifar10", "root": None, "train": False},
                 "label": "label"},
    },
    "multidigit": {
        "description": "Intriguing Properties Table 3: MultiDigit, 4 randomly placed digits on 112x112",
        "encoder": {"name": "resnet18", "in_channels": 1},
        "dataset": {"name": "multidigit", "n_digits": 4, "placement": "random", "size": 20000},
        "augment": {"policy": "simclr_imagenet", "size": 112},
        "train": {"epochs": 100, "batch_size": 256, "optimizer": "lars", "temperature": 0.2},
        "eval": {"train": {"name": "multidigit_eval", "size": 5000, "seed": 1, "train": True},
                 "test": {"name": "multidigit_eval", "size": 2000, "seed": 2, "train": False},
                 "label": "label"},
    },
    "random_bits": {
        "description": "Intriguing Properties: feature suppression by 10 random bits on MNIST",
        "encoder": {"name": "small_convnet", "in_channels": 11, "input_size": 28},
        "dataset": {"name": "random_bits", "bits": 10},
        "augment": {"policy": "random_bits_crop"},
        "train": {"epochs": 50, "batch_size": 256, "optimizer": "lars", "temperature": 0.2},
        "eval": {"train": {"name": "random_bits", "bits": 10}, "label": "label"},
    },
    "hierarchy": {
        "description": "Hermann et al.: the hierarchy data, LeNet encoder, 120-84-84 head (a plain MLP, as the "
                       "paper's), 28x28 crops, Adam 1e-3, tau 0.1, 100 epochs",
        "encoder": {"name": "lenet", "in_channels": 4, "input_size": 28},
        "dataset": {"name": "hierarchy"},
        "augment": {"policy": "crop_without_resize", "size": 28},
        "head": {"hidden_dim": [120, 84], "out_dim": 84, "num_layers": 3, "batch_norm": False},
        "train": {"epochs": 100, "batch_size": 256, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
                  "warmup_epochs": 0, "schedule": "constant", "temperature": 0.1},
        "eval": None,
    },
    "sprites": {
        "description": "Hermann et al.: sprites with crop and colour jitter, ResNet-18 (CIFAR stem), "
                       "512-512-128 head (no output bias), Adam 1e-3, batch 128, tau 0.5, 200 epochs",
        "encoder": {"name": "resnet18", "cifar_stem": True},
        "dataset": {"name": "sprites"},
        "augment": {"policy": "sprites_crop+jitter", "size": 64},
        "head": {"hidden_dim": 512, "out_dim": 128, "num_layers": 3, "batch_norm": False, "output_bias": False},
        "train": {"epochs": 200, "batch_size": 128, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
                  "warmup_epochs": 0, "schedule": "constant", "temperature": 0.5},
        "eval": {"train": {"name": "sprites"}, "label": "colour"},
    },
}


def resolve_config(config: dict | str) -> dict:
    """A full configuration from a preset name, a path to a JSON/YAML file or a dict
    (``"preset"`` in a dict or file names the base to override). Sections merge key by key,
    except a section whose ``name`` differs from the base's (another encoder or dataset),
    which replaces it."""
    if isinstance(config, str):
        if config in PRESETS:
            config = {"preset": config}
        elif os.path.exists(config):
            config = _read(config)
        else:
            raise ValueError(f"config: {config!r} is neither a preset ({', '.join(PRESETS)}) nor a file")
    if not isinstance(config, dict):
        raise TypeError(f"config: expected a dict, a preset name or a file path, got {type(config).__name__}")
    unknown = set(config) - set(SECTIONS)
    if unknown:
        raise ValueError(f"config: unknown keys {sorted(unknown)}; expected among {', '.join(SECTIONS)}")
    base = {}
    if "preset" in config:
        if config["preset"] not in PRESETS:
            raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, got {config['preset']!r}")
        base = copy.deepcopy(PRESETS[config["preset"]])
    for key, value in config.items():
        # A section naming another encoder/dataset replaces the base's: the base's options
        # (a ResNet's cifar_stem, a dataset's bits) belong to what it named.
        renamed = isinstance(value, dict) and "name" in value and value["name"] != (base.get(key) or {}).get("name")
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "eval" and not renamed:
            base[key] = {**base[key], **value}
        else:
            base[key] = copy.deepcopy(value)
    for key in ("encoder", "dataset", "train"):
        if not isinstance(base.get(key), dict):
            raise ValueError(f"config: needs an {key!r} section")
    return base


def _read(path: str) -> dict:
    with open(path) as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError as exc:
            raise ImportError(f"config: reading {path} needs PyYAML (pip install pyyaml), or use JSON") from exc
        return yaml.safe_load(text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"config: {path} is not valid JSON ({exc})") from exc


def set_option(config: dict, assignment: str) -> None:
    """Applies ``section.key=value`` (value parsed as JSON when it parses, else a string)."""
    if "=" not in assignment or "." not in assignment.split("=", 1)[0]:
        raise ValueError(f"--set: expected section.key=value, got {assignment!r}")
    path, text = assignment.split("=", 1)
    section, key = path.split(".", 1)
    if section not in SECTIONS or section in ("description", "preset"):
        raise ValueError(f"--set: unknown section {section!r}; expected among encoder, dataset, augment, head, train, eval")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    if not isinstance(config.get(section), dict):
        config[section] = {}
    config[section][key] = value


def build_encoder(spec: dict) -> nn.Module:
    from ..models import make_encoder

    spec = dict(spec)
    return make_encoder(spec.pop("name"), **spec)


def build_dataset(spec: dict):
    from ..data import make_dataset

    spec = dict(spec)
    return make_dataset(spec.pop("name"), **spec)


def build_augment(spec: dict | None):
    """``augment(images, generator)`` from a policy of pyclr.data.augment, or None."""
    if spec is None:
        return None
    from ..data import augment as aug

    spec = dict(spec)
    policy = spec.pop("policy")
    if policy == "crop_without_resize":
        size = spec.pop("size")
        return lambda x, generator: aug.crop_without_resize(x, size, generator)
    if policy == "random_bits_crop":
        return lambda x, generator: aug.random_bits_crop(x, generator)
    if "crop_scale" in spec:
        spec["crop_scale"] = tuple(spec["crop_scale"])
    return aug.SimCLRAugment.from_policy(policy, **spec)


def build_head(spec: dict | None, encoder: nn.Module):
    from ..models import ProjectionHead

    if spec is None:
        return None
    spec = dict(spec)
    return ProjectionHead(spec.pop("in_dim", encoder.feature_dim), **spec)


def device_of(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
