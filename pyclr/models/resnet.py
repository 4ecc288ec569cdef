"""ResNet-18/34/50 with SimCLR's width multiplier and an optional CIFAR stem.

Module names follow torchvision's (``conv1``, ``bn1``, ``layer1`` ... ``layer4``, blocks with
``conv1``/``bn1``/.../``downsample``), so torchvision state dicts and the converted SimCLR
checkpoints (which use that layout, with every channel count times the width multiplier)
load with :meth:`ResNet.load_torchvision_state_dict`.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .._checks import check_bool, check_choice, check_int
from .encoder import Encoder

# name: (block, blocks per stage)
ARCHS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
         "resnet50": ("bottleneck", (3, 4, 6, 3))}
WIDTHS = (1, 2, 4)


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(cin, planes, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = conv1x1(cin, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes, stride), nn.BatchNorm2d(planes)  # stride here, as torchvision (v1.5)
        self.conv3, self.bn3 = conv1x1(planes, planes * 4), nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(Encoder):
    """A ResNet encoder: ``forward`` gives the globally average-pooled representation
    (``feature_dim`` = 512·width for ResNet-18/34, 2048·width for ResNet-50); ``features``
    reads the taps ``stem``, ``block1`` ... ``block4`` (the outputs of ``layer1`` ...
    ``layer4``, before pooling).

    Args:
        arch: ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
        width: SimCLR's width multiplier (1, 2 or 4): every channel count times ``width``.
        cifar_stem: a 3x3 stride-1 first convolution and no max-pool (for 32x32 inputs).
        in_channels: input channels (3 for RGB; any count).
    """

    def __init__(self, arch: str = "resnet50", width: int = 1, cifar_stem: bool = False,
                 in_channels: int = 3):
        super().__init__()
        if not isinstance(arch, str) or arch not in ARCHS:  # a list raised 'unhashable type'
            raise ValueError(f"arch: expected one of {', '.join(map(repr, ARCHS))}, got {arch!r}")
        width = check_int("width", width)
        check_choice("width", width, WIDTHS)
        cifar_stem, in_channels = check_bool("cifar_stem", cifar_stem), check_int("in_channels", in_channels, 1)
        self.arch, self.width, self.cifar_stem, self.in_channels = arch, width, cifar_stem, in_channels
        kind, counts = ARCHS[arch]
        block = BasicBlock if kind == "basic" else Bottleneck
        base = 64 * width
        if cifar_stem:
            self.conv1 = conv3x3(in_channels, base)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, base, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1, self.relu = nn.BatchNorm2d(base), nn.ReLU(inplace=True)
        self._cin = base
        self.layer1 = self._make_layer(block, base, counts[0], 1)
        self.layer2 = self._make_layer(block, base * 2, counts[1], 2)
        self.layer3 = self._make_layer(block, base * 4, counts[2], 2)
        self.layer4 = self._make_layer(block, base * 8, counts[3], 2)
        self.feature_dim = base * 8 * block.expansion
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, count, stride):
        downsample = None
        if stride != 1 or self._cin != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self._cin, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self._cin, planes, stride, downsample)]
        self._cin = planes * block.expansion
        layers += [block(self._cin, planes) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def _stem(self, x):
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def stages(self):
        return [("stem", self._stem), ("block1", self.layer1), ("block2", self.layer2),
                ("block3", self.layer3), ("block4", self.layer4)]

    @property
    def default_taps(self) -> tuple[str, ...]:
        return ("block1", "block2", "block3", "block4")

    def pool(self, x):
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def load_torchvision_state_dict(self, state_dict: Mapping, strict: bool = True) -> dict:
        """Loads a state dict in torchvision's ResNet layout (a torchvision model's, or a
        converted SimCLR checkpoint's; a ``{"state_dict": ...}`` wrapper and a ``module.``
        prefix are accepted). The classifier (``fc.*``) has no place in an encoder: its
        tensors are returned, for a linear evaluation that wants them. Any other missing or
        unexpected key, or a shape that does not match (another depth or width), raises a
        ``ValueError`` that names them."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a mapping of tensors, got {type(state_dict).__name__}")
        if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
            state_dict = state_dict["state_dict"]
        strict = check_bool("strict", strict)
        state = {k.removeprefix("module."): v for k, v in state_dict.items()}
        others = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor))
        if others:
            raise TypeError(f"state_dict: expected tensors, got {type(state[others[0]]).__name__} at "
                            f"{', '.join(others[:4])}{' and more' if len(others) > 4 else ''}")
        classifier = {k: state.pop(k) for k in list(state) if k.startswith("fc.")}
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if wrong or (strict and (missing or unexpected)):
            raise ValueError(self._mismatch_message(missing, unexpected, wrong, own, state))
        self.load_state_dict(state, strict=False)
        return classifier

    def _mismatch_message(self, missing, unexpected, wrong, own, state):
        def some(keys):
            return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")

        parts = [f"state_dict does not fit {self.arch} (width {self.width}, "
                 f"{'CIFAR' if self.cifar_stem else 'ImageNet'} stem, {self.in_channels} input channels):"]
        if missing:
            parts.append(f"missing keys: {some(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {some(unexpected)}")
        if wrong:
            k = wrong[0]
            parts.append(f"shape mismatch in {len(wrong)} tensors, e.g. {k}: expected "
                         f"{tuple(own[k].shape)}, got {tuple(state[k].shape)}")
        return parts[0] + " " + "; ".join(parts[1:])


def resnet18(**kwargs) -> ResNet:
    return ResNet("resnet18", **kwargs)


def resnet34(**kwargs) -> ResNet:
    return ResNet("resnet34", **kwargs)


def resnet50(**kwargs) -> ResNet:
    return ResNet("resnet50", **kwargs)
