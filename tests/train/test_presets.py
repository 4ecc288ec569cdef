import pytest
import torch

from pyclr.train.presets import PRESETS, build_encoder, build_head, resolve_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_its_encoder_and_head(name):
    cfg = resolve_config(name)
    encoder = build_encoder(cfg["encoder"])
    head = build_head(cfg.get("head"), encoder)
    assert encoder.feature_dim > 0
    if head is not None:
        assert head.in_dim == encoder.feature_dim


def test_overrides_merge_key_by_key():
    cfg = resolve_config({"preset": "demo", "train": {"epochs": 1}, "encoder": {"input_size": 32}})
    assert cfg["train"]["epochs"] == 1 and cfg["train"]["optimizer"] == PRESETS["demo"]["train"]["optimizer"]
    assert cfg["encoder"] == {**PRESETS["demo"]["encoder"], "input_size": 32}


def test_a_section_naming_another_encoder_replaces_the_presets():
    # the sprites preset's ResNet has cifar_stem, which a small ConvNet does not take
    cfg = resolve_config({"preset": "sprites", "encoder": {"name": "small_convnet", "in_channels": 3,
                                                           "input_size": 32}})
    assert cfg["encoder"] == {"name": "small_convnet", "in_channels": 3, "input_size": 32}
    encoder = build_encoder(cfg["encoder"])
    assert encoder(torch.rand(2, 3, 32, 32)).shape == (2, encoder.feature_dim)
    same = resolve_config({"preset": "sprites", "encoder": {"name": "resnet18", "width": 2}})
    assert same["encoder"] == {"name": "resnet18", "cifar_stem": True, "width": 2}
