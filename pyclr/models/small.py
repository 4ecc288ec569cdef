"""The small encoders of the seed papers' controlled experiments."""
from __future__ import annotations

import torch
from torch import nn

from .._checks import check_bool, check_int
from .encoder import Encoder


def _flatten(x: torch.Tensor, shape: tuple, input_size: int) -> torch.Tensor:
    """The dense part fixes the last map's (C, H, W): say so rather than fail in a matmul, or
    read a map of another shape but as many values (37x22 inputs to a 28x28 LeNet) scrambled."""
    if tuple(x.shape[1:]) != shape:
        raise ValueError(f"x: this encoder was built for {input_size}x{input_size} inputs "
                         f"(input_size={input_size}); its last map is {tuple(x.shape[1:])}, not {shape}")
    return torch.flatten(x, 1)


class LeNet(Encoder):
    """The LeNet-style encoder of Hermann et al. (hierarchy experiment): 5x5 convolutions of
    6 and 16 filters (stride 1), each followed by ReLU and a 2x2 max-pool of stride 1. The
    representation is the flattened last map (16 x 18 x 18 = 5184 for 28x28 inputs); the
    paper's 120-84-84 head is ``ProjectionHead(5184, (120, 84), 84, num_layers=3)``.
    Taps: ``conv1``, ``conv2``."""

    min_input_size = 11  # two 5x5 convolutions and two 2x2 pools of stride 1 take 10 pixels off

    def __init__(self, in_channels: int = 4, input_size: int = 28):
        super().__init__()
        self.in_channels = in_channels = check_int("in_channels", in_channels, 1)
        size = check_int("input_size", input_size, self.min_input_size)
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, 6, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2, stride=1))
        self.conv2 = nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2, stride=1))
        side = size - 10
        self.input_size = size
        self.feature_dim = 16 * side * side
        self._map_shape = (16, side, side)

    def stages(self):
        return [("conv1", self.conv1), ("conv2", self.conv2)]

    def pool(self, x):
        return _flatten(x, self._map_shape, self.input_size)


class SmallConvNet(Encoder):
    """A small ConvNet for the random-bits experiment, after Chen et al.'s: three 3x3
    stride-2 convolutions of 32, 64 and 64 channels with ReLU, then a 128-unit dense layer
    with ReLU, the representation (the authors' notebook also puts batch norm after every
    layer; this one has none). Taps: ``conv1``, ``conv2``, ``conv3``.

    ``global_pool=True`` averages the last map over space before the dense layer: the
    representation no longer depends on where in the image a pattern is (and any input size
    works), which objects placed at random on a larger canvas (MultiDigit) need."""

    def __init__(self, in_channels: int = 1, input_size: int = 28, feature_dim: int = 128,
                 global_pool: bool = False):
        super().__init__()
        global_pool = check_bool("global_pool", global_pool)
        self.in_channels = in_channels = check_int("in_channels", in_channels, 1)
        size, feature_dim = check_int("input_size", input_size, 1), check_int("feature_dim", feature_dim, 1)
        self.conv1 = nn.Sequential(nn.Conv2d(in_channels, 32, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.conv3 = nn.Sequential(nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.input_size = size
        for _ in range(3):
            size = (size + 1) // 2  # 3x3, stride 2, padding 1
        self.global_pool = global_pool
        in_features = 64 if global_pool else 64 * size * size
        self.dense = nn.Sequential(nn.Linear(in_features, feature_dim), nn.ReLU(inplace=True))
        self.feature_dim = feature_dim
        self._map_shape = (64, size, size)

    def stages(self):
        return [("conv1", self.conv1), ("conv2", self.conv2), ("conv3", self.conv3)]

    def pool(self, x):
        if self.global_pool:
            return self.dense(x.mean((2, 3)))
        return self.dense(_flatten(x, self._map_shape, self.input_size))
