"""Encoders with named feature taps, and projection heads with per-layer outputs."""
from __future__ import annotations

from .._checks import check_options
from .encoder import Encoder
from .heads import ProjectionHead
from .resnet import ResNet, resnet18, resnet34, resnet50
from .small import LeNet, SmallConvNet

ENCODERS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50,
            "lenet": LeNet, "small_convnet": SmallConvNet}


def make_encoder(name: str, **kwargs) -> Encoder:
    """An encoder by name: ``resnet18``/``resnet34``/``resnet50`` (``width``, ``cifar_stem``,
    ``in_channels``), ``lenet`` and ``small_convnet`` (``in_channels``, ``input_size``)."""
    if not isinstance(name, str) or name not in ENCODERS:  # a list raised 'unhashable type'
        raise ValueError(f"encoder: expected one of {', '.join(map(repr, ENCODERS))}, got {name!r}")
    if name.startswith("resnet"):  # resnet18(**kwargs) is ResNet("resnet18", **kwargs)
        check_options(f"encoder {name!r}", ResNet, kwargs, fixed=("arch",))
    else:
        check_options(f"encoder {name!r}", ENCODERS[name], kwargs)
    return ENCODERS[name](**kwargs)


__all__ = ["Encoder", "ProjectionHead", "ResNet", "resnet18", "resnet34", "resnet50", "LeNet",
           "SmallConvNet", "ENCODERS", "make_encoder"]
