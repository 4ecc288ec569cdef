"""Encoders with named feature taps, and projection heads with per-layer outputs."""
from __future__ import annotations

from .encoder import Encoder
from .heads import ProjectionHead
from .resnet import ResNet, resnet18, resnet34, resnet50
from .small import LeNet, SmallConvNet

ENCODERS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50,
            "lenet": LeNet, "small_convnet": SmallConvNet}


def make_encoder(name: str, **kwargs) -> Encoder:
    """An encoder by name: ``resnet18``/``resnet34``/``resnet50`` (``width``, ``cifar_stem``,
    ``in_channels``), ``lenet`` and ``small_convnet`` (``in_channels``, ``input_size``)."""
    if name not in ENCODERS:
        raise ValueError(f"encoder: expected one of {', '.join(map(repr, ENCODERS))}, got {name!r}")
    return ENCODERS[name](**kwargs)


__all__ = ["Encoder", "ProjectionHead", "ResNet", "resnet18", "resnet34", "resnet50", "LeNet",
           "SmallConvNet", "ENCODERS", "make_encoder"]
