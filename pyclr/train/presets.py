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

``{"preset": NAME, ...}`` starts from a preset and overrides it key by key; a section that
names another encoder, dataset or augmentation policy than the preset's replaces the preset's
section (its options belong to what it named), and so does ``--set augment.policy=...``. An
eval split of the training dataset's kind without a root reads from ``dataset.root``.
Every key is checked before anything is built: a missing or misspelt one is an error that
names it and its section.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import re

import torch
from torch import nn

from .._checks import check_device, check_options, shown

SECTIONS = ("encoder", "dataset", "augment", "head", "train", "eval", "description", "preset")
DESCRIPTION_MAX = 10_000  # characters: a note about the run, written into config.json and report.json
# The key that says what a section builds. A section (or a --set) naming another one than the
# base's starts afresh instead of merging: the base's other keys (a ResNet's cifar_stem, a
# dataset's bits, a policy's crop_scale) belong to what the base named.
SELECTORS = {"encoder": "name", "dataset": "name", "augment": "policy"}
# pyclr.train's arguments that run_experiment passes itself: not train-section keys.
RUN_ARGUMENTS = ("encoder", "dataset", "augment", "head", "out_dir", "device", "resume", "progress",
                 "callbacks", "on_epoch_end")
EVAL_KEYS = ("train", "test", "label")
# Augmentations that are functions of pyclr.data.augment rather than SimCLRAugment policies.
AUGMENT_FUNCTIONS = ("crop_without_resize", "random_bits_crop")

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
                       "needs dataset.root (the eval sets read it too)",
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


def resolve_config(config: dict | str, overrides=()) -> dict:
    """A full, checked configuration from a preset name, a path to a JSON/YAML file or a dict
    (``"preset"`` in a dict or file names the base to override), with ``overrides``
    (``section.key=value`` strings, as ``--set`` takes them; see :func:`apply_overrides`)
    applied last. Sections merge key by key, except a section that names another encoder,
    dataset or augmentation policy than the base's, which replaces it, and ``eval``, which
    replaces the base's. Raises ValueError naming the section and key of anything missing,
    misspelt or unknown (:func:`check_config`)."""
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
        if not isinstance(config["preset"], str) or config["preset"] not in PRESETS:
            raise ValueError(f"preset: expected one of {', '.join(PRESETS)}, got {config['preset']!r}")
        base = copy.deepcopy(PRESETS[config["preset"]])
    for key, value in config.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "eval" \
                and not _renames(key, base[key], value):
            base[key] = {**base[key], **value}
        else:
            base[key] = copy.deepcopy(value)
    if overrides:
        base = apply_overrides(base, overrides)
    _inherit_data_root(base)
    check_config(base)
    return base


def _inherit_data_root(config: dict) -> None:
    """An eval split of the training dataset's kind with no root of its own reads from the
    dataset's root: ``--set dataset.root=data/`` is enough for the CIFAR-10 preset."""
    dataset, evaluation = config.get("dataset"), config.get("eval")
    if not (isinstance(dataset, dict) and dataset.get("root") is not None and isinstance(evaluation, dict)):
        return
    for split in ("train", "test"):
        spec = evaluation.get(split)
        if isinstance(spec, dict) and spec.get("name") == dataset.get("name") and spec.get("root") is None:
            spec["root"] = dataset["root"]


def _renames(section: str, base: dict, value: dict) -> bool:
    """Whether ``value`` names another encoder, dataset or policy than the ``base`` section."""
    selector = SELECTORS.get(section)
    return selector in value and value[selector] != base.get(selector)


def _read(path: str) -> dict:
    with open(path) as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError as exc:
            raise ImportError(f"config: reading {path} needs PyYAML (pip install pyyaml), or use JSON") from exc
        try:
            return yaml.load(text, Loader=_yaml_loader(yaml, path))
        except yaml.YAMLError as exc:
            raise ValueError(f"config: {path} is not valid YAML ({exc})") from exc
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, path))
    except json.JSONDecodeError as exc:
        raise ValueError(f"config: {path} is not valid JSON ({exc})") from exc


def _unique_keys(pairs, path: str) -> dict:
    """The mapping of ``pairs``, refusing a key given twice: JSON and YAML readers keep the last
    one silently, and an edited config that sets ``lr`` twice would train with either."""
    mapping = {}
    for key, value in pairs:
        if key in mapping:
            raise ValueError(f"config: {path} gives the key {key!r} twice; keep one")
        mapping[key] = value
    return mapping


# A decimal number as people write one: 1e-3, .5, 5., 01 (JSON takes none of these; YAML 1.1,
# PyYAML's, reads 1e-3 as a string).
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _yaml_loader(yaml, path: str):
    """PyYAML's safe loader reading 1e-3 (and every _NUMBER with a dot or an exponent) as a float,
    as YAML 1.2 does, and refusing a key given twice in one mapping (:func:`_unique_keys`)."""
    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                # the keys written in this mapping; those a merge (<<: *base) brings may be overridden
                seen = set()
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                        continue
                    key = self.construct_object(key_node)
                    if key in seen:
                        raise ValueError(f"config: {path} gives the key {key!r} twice (line "
                                         f"{key_node.start_mark.line + 1}); keep one")
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    floats = re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)$|^[-+]?(?:\d+\.\d*|\.\d+)$")
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", floats, list("-+0123456789."))
    return Loader


def _number(text: str):
    """``text`` as an int or float when it is a decimal number, else None."""
    if not _NUMBER.fullmatch(text):
        return None
    return int(text) if re.fullmatch(r"[-+]?\d+", text) else float(text)


def parse_assignment(assignment: str) -> tuple[str, list[str], object]:
    """``"section.key=value"`` -> ``(section, [key, ...], value)``; the value is parsed as JSON
    when it parses (numbers, true/false/null, lists, dicts), as a number when it is one in
    another spelling (1e-3, .5, 01), else kept as a string."""
    path, sep, text = assignment.partition("=")
    section, *keys = path.split(".")
    if not sep or not keys or not all(keys):
        raise ValueError(f"--set: expected section.key=value, got {assignment!r}")
    if section not in SECTIONS or section in ("description", "preset"):
        raise ValueError(f"--set: unknown section {section!r}; expected among encoder, dataset, augment, head, train, eval")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        number = _number(text)
        value = text if number is None else number
    return section, keys, value


def apply_overrides(config: dict, assignments) -> dict:
    """A copy of ``config`` with the ``section.key=value`` ``assignments`` (``--set``) applied.
    They are taken together, so their order does not matter except between two of the same key
    (the last wins): keys merge into their section, except that a new encoder/dataset ``name``
    or augmentation ``policy`` starts the section afresh, keeping only the assignments made to
    it (``--set augment.policy=crop_without_resize --set augment.size=28``), as a config file's
    section would. ``section.key.subkey=value`` sets a nested key (``eval.train.root=data/``)."""
    config = copy.deepcopy(config)
    by_section = {}
    for assignment in assignments:
        section, keys, value = parse_assignment(assignment)
        by_section.setdefault(section, []).append((keys, value))
    for section, values in by_section.items():
        existing = config.get(section)
        if existing is not None and not isinstance(existing, dict):  # was replaced by the assignments, silently
            raise ValueError(f"{section}: expected a section of key: value options, got {shown(existing)}")
        current = existing or {}
        if _renames(section, current, {keys[0]: value for keys, value in values if len(keys) == 1}):
            current = {}
        for keys, value in values:
            target = current
            for key in keys[:-1]:
                if not isinstance(target.get(key), dict):
                    target[key] = {}
                target = target[key]
            target[keys[-1]] = value
        config[section] = current
    return config


def check_config(cfg: dict) -> None:
    """Every section's keys, before anything is built or trained: the required ones present
    (encoder and dataset ``name``, augment ``policy``, eval ``train``), none unknown to what
    the section builds (``pyclr.train``'s options, ``ProjectionHead``'s, the policy's; the
    encoders and datasets check theirs when built, also before training)."""
    from ..models import ProjectionHead
    from .loop import check_train_values, train

    for key in ("encoder", "dataset", "train"):
        if not isinstance(cfg.get(key), dict):
            raise ValueError(f"config: needs an {key!r} section")
    description = cfg.get("description")
    if description is not None and not (isinstance(description, str) and len(description) <= DESCRIPTION_MAX):
        got = f"str of {len(description)} characters" if isinstance(description, str) else type(description).__name__
        raise ValueError(f"description: expected a string of at most {DESCRIPTION_MAX} characters, got {got}")
    _require_name(cfg["encoder"], "encoder", _encoder_names())
    _require_name(cfg["dataset"], "dataset", _dataset_names())
    check_options("train", train, cfg["train"], fixed=RUN_ARGUMENTS)
    with named_in("train"):
        check_train_values(cfg["train"])  # values too: a refused one must not reach a run folder
    if cfg.get("augment") is not None:
        _check_augment(cfg["augment"])
    if cfg.get("head") is not None:
        _check_section("head", cfg["head"])
        check_options("head", ProjectionHead, cfg["head"])
    if cfg.get("eval") is not None:  # null: no probe; anything else must be a section
        _check_eval(cfg["eval"])


def _check_section(name: str, spec) -> None:
    if not isinstance(spec, dict):
        raise ValueError(f"{name}: expected a section of keys (a dict), got {type(spec).__name__} {spec!r}")


def _require_name(spec, section: str, names) -> None:
    _check_section(section, spec)
    if "name" not in spec:
        raise ValueError(f"{section}: needs a 'name' (one of {', '.join(names)})")


def _encoder_names():
    from ..models import ENCODERS

    return tuple(ENCODERS)


def _dataset_names():
    from ..data.registry import DATASETS

    return tuple(DATASETS)


def _augment_policies():
    from ..data.augment import POLICIES

    return AUGMENT_FUNCTIONS + tuple(POLICIES)


def _check_augment(spec) -> None:
    """The ``augment`` section: a known ``policy`` and only the keys it takes."""
    from ..data import augment as aug

    _check_section("augment", spec)
    policies = _augment_policies()
    if "policy" not in spec:
        raise ValueError(f"augment: needs a 'policy' (one of {', '.join(policies)}); "
                         "for no augmentation, leave the section out or set it to null")
    policy = spec["policy"]
    if policy not in policies:
        raise ValueError(f"augment.policy: expected one of {', '.join(policies)}, got {policy!r}")
    options = {k: v for k, v in spec.items() if k != "policy"}
    name = f"augment {policy!r}"
    if policy in AUGMENT_FUNCTIONS:
        check_options(name, getattr(aug, policy), options, fixed=("x", "generator"))
        if policy == "crop_without_resize" and "size" not in options:
            raise ValueError(f"{name}: needs a 'size' (the crop's height and width, e.g. 28)")
    else:
        check_options(name, aug.SimCLRAugment, options)


def _check_eval(spec) -> None:
    """The ``eval`` section: ``train`` (and optionally ``test``) dataset sections, ``label``."""
    if not isinstance(spec, dict):
        raise ValueError(f"eval: expected a section of keys (a dict), or null for no probe, got "
                         f"{type(spec).__name__} {spec!r}")
    unknown = sorted(set(spec) - set(EVAL_KEYS))
    if unknown:
        raise ValueError(f"eval: unknown options {unknown}; it takes {', '.join(EVAL_KEYS)}")
    if not spec.get("train"):
        raise ValueError("eval: needs a 'train' dataset section (the probe's training set, e.g. "
                         "{\"name\": \"multidigit_eval\", \"size\": 3000}); 'test' is optional, else 20% "
                         "of 'train' is held out; for no probe, set eval to null")
    for split in ("train", "test"):
        if spec.get(split) is not None:
            _require_name(spec[split], f"eval.{split}", _dataset_names())
    label = spec.get("label")
    if label is not None and not isinstance(label, str):
        raise ValueError(f"eval.label: expected a label name (a string) or null, got {label!r}")


@contextlib.contextmanager
def named_in(section: str):
    """Errors of a section's values name the key with its section: ``dataset.size: ...``, not
    ``size: ...`` (which the dataset, its augmentation and the eval sets all have)."""
    try:
        yield
    except (ValueError, TypeError, FileNotFoundError) as exc:
        message = str(exc)
        key = re.match(r"(\w+): ", message)
        if type(exc) in (ValueError, TypeError, FileNotFoundError) and key and key.group(1) != section:
            raise type(exc)(f"{section}.{message}") from exc
        raise


def build_encoder(spec: dict) -> nn.Module:
    from ..models import make_encoder

    _require_name(spec, "encoder", _encoder_names())
    spec = dict(spec)
    with named_in("encoder"):
        return make_encoder(spec.pop("name"), **spec)


def build_dataset(spec: dict, section: str = "dataset"):
    """The dataset a ``{"name": ..., options}`` section names; ``section`` names it in errors."""
    from ..data import make_dataset

    _require_name(spec, section, _dataset_names())
    spec = dict(spec)
    with named_in(section):
        return make_dataset(spec.pop("name"), **spec)


def build_augment(spec: dict | None):
    """``augment(images, generator)`` from a policy of pyclr.data.augment, or None."""
    if spec is None:
        return None
    from .._checks import check_size
    from ..data import augment as aug

    _check_augment(spec)
    spec = dict(spec)
    policy = spec.pop("policy")
    with named_in("augment"):
        if policy == "crop_without_resize":
            size = check_size("size", spec.pop("size"))  # now, not at the first step
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
    _check_section("head", spec)
    check_options("head", ProjectionHead, spec)
    spec = dict(spec)
    with named_in("head"):
        return ProjectionHead(spec.pop("in_dim", encoder.feature_dim), **spec)


def device_of(name: str | None) -> torch.device:
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(name)
