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


def test_another_policy_starts_the_augment_section_afresh():
    """The demo's crop_scale and jitter_strength belong to its simclr_cifar policy: naming
    another policy (in a config or with --set) drops them instead of failing on them."""
    cfg = resolve_config({"preset": "demo", "augment": {"policy": "random_bits_crop"}})
    assert cfg["augment"] == {"policy": "random_bits_crop"}
    cfg = resolve_config("demo", overrides=["augment.policy=random_bits_crop"])
    assert cfg["augment"] == {"policy": "random_bits_crop"}
    # the assignments go together: their order does not matter
    cfg = resolve_config("demo", overrides=["augment.size=24", "augment.policy=crop_without_resize"])
    assert cfg["augment"] == {"policy": "crop_without_resize", "size": 24}
    # the same policy merges key by key
    cfg = resolve_config("demo", overrides=["augment.policy=simclr_cifar", "augment.size=24"])
    assert cfg["augment"] == {**PRESETS["demo"]["augment"], "size": 24}
    # keys written beside the new policy are checked, not dropped
    with pytest.raises(ValueError, match=r"augment 'random_bits_crop': unknown options \['crop_scale'\]; it takes none"):
        resolve_config({"preset": "demo", "augment": {"policy": "random_bits_crop", "crop_scale": [0.5, 1.0]}})


def test_overrides_reach_nested_keys_and_keep_the_rest():
    cfg = resolve_config("demo", overrides=["eval.train.size=100", "eval.label=label", "train.lr=0.01"])
    assert cfg["eval"]["train"] == {**PRESETS["demo"]["eval"]["train"], "size": 100}
    assert cfg["eval"]["test"] == PRESETS["demo"]["eval"]["test"]
    assert cfg["train"] == {**PRESETS["demo"]["train"], "lr": 0.01}
    cfg = resolve_config("demo", overrides=["encoder.name=lenet", "encoder.in_channels=1"])
    assert cfg["encoder"] == {"name": "lenet", "in_channels": 1}  # another encoder: the ConvNet's input_size goes
    for bad in ("train.lr", "train.=1", "model.width=2"):
        with pytest.raises(ValueError, match="--set: "):
            resolve_config("demo", overrides=[bad])


def test_every_section_is_checked():
    with pytest.raises(ValueError, match=r"train: unknown options \['device'\]"):
        resolve_config({"preset": "demo", "train": {"device": "cuda"}})  # a run's argument, not a train key
    with pytest.raises(ValueError, match="eval.label: expected a label name"):
        resolve_config({"preset": "demo", "eval": {**PRESETS["demo"]["eval"], "label": 3}})
    assert resolve_config({"preset": "demo", "augment": None, "head": None, "eval": None})["augment"] is None


def test_values_are_checked_with_the_keys():
    with pytest.raises(ValueError, match=r"momentum: expected a finite number in \[0, 1\], got 2"):
        resolve_config({"preset": "demo", "train": {"momentum": 2}})
    with pytest.raises(TypeError, match="compile: expected a bool, got 'no'"):
        resolve_config({"preset": "demo", "train": {"compile": "no"}})
    with pytest.raises(ValueError, match="preset: expected one of"):
        resolve_config({"preset": ["demo"]})  # was: unhashable type: 'list'


def test_numbers_as_people_write_them(tmp_path):
    # PyYAML (YAML 1.1) read 1e-3 as a string, and --set took only JSON numbers
    path = tmp_path / "c.yaml"
    path.write_text("preset: demo\ntrain:\n  lr: 1e-3\n  weight_decay: 5e-4\n  epochs: 3\ndescription: '1e-3'\n")
    cfg = resolve_config(str(path))
    assert (cfg["train"]["lr"], cfg["train"]["weight_decay"], cfg["train"]["epochs"]) == (1e-3, 5e-4, 3)
    assert cfg["description"] == "1e-3"  # quoted: still a string
    cfg = resolve_config("demo", ["train.lr=.5", "train.weight_decay=1e-3", "train.epochs=02"])
    assert (cfg["train"]["lr"], cfg["train"]["weight_decay"], cfg["train"]["epochs"]) == (0.5, 1e-3, 2)
    assert resolve_config("demo", ["dataset.root=/data/x"])["dataset"]["root"] == "/data/x"


@pytest.mark.parametrize("suffix,text", [
    (".json", '{"preset": "demo", "train": {"lr": 0.1, "epochs": 2, "lr": 0.3}}'),
    (".yaml", "preset: demo\ntrain:\n  lr: 0.1\n  epochs: 2\n  lr: 0.3\n"),
])
def test_a_key_given_twice_is_refused(tmp_path, suffix, text):
    # both readers kept the last lr silently: an edited config trained with a rate nobody chose
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"gives the key 'lr' twice.*; keep one"):
        resolve_config(str(path))


def test_a_yaml_merge_key_may_be_overridden(tmp_path):
    path = tmp_path / "c.yaml"
    # a merge without an override, and merged keys overridden: neither is a key given twice
    path.write_text("preset: demo\ntrain:\n  <<: {lr: 0.1, epochs: 2}\n  weight_decay: 0.001\n")
    assert [resolve_config(str(path))["train"][k] for k in ("lr", "epochs", "weight_decay")] == [0.1, 2, 0.001]
    path.write_text("preset: demo\ntrain:\n  <<: {lr: 0.1, epochs: 2}\n  lr: 0.2\n")
    cfg = resolve_config(str(path))
    assert (cfg["train"]["lr"], cfg["train"]["epochs"]) == (0.2, 2)


@pytest.mark.parametrize("value", [[], False, 0, "", "none"])
def test_eval_is_a_section_or_null(value):
    # an empty list, false or 0 skipped the probe silently, as if the section were null
    with pytest.raises(ValueError, match="eval: expected a section of keys .*, or null for no probe"):
        resolve_config({"preset": "demo", "eval": value})


def test_description_is_a_bounded_string(tmp_path):
    # a YAML alias bomb in the free-form description once expanded into a 130 MB config.json
    path = tmp_path / "bomb.yaml"
    levels = ["preset: demo", "description:", '  - &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"  - &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 7)]
    path.write_text("\n".join(levels) + "\n")
    with pytest.raises(ValueError, match="description: expected a string of at most 10000 characters, got list"):
        resolve_config(str(path))
    with pytest.raises(ValueError, match="got str of 10001 characters"):
        resolve_config({"preset": "demo", "description": "x" * 10_001})
    assert resolve_config({"preset": "demo", "description": "my run"})["description"] == "my run"


def test_eval_sets_of_the_same_dataset_read_its_root():
    cfg = resolve_config("simclr_cifar10", ["dataset.root=/data/cifar"])
    assert cfg["eval"]["train"]["root"] == cfg["eval"]["test"]["root"] == "/data/cifar"
    own = resolve_config("simclr_cifar10", ["dataset.root=/data/cifar", "eval.test.root=/other"])
    assert own["eval"]["train"]["root"] == "/data/cifar" and own["eval"]["test"]["root"] == "/other"
    assert resolve_config("simclr_cifar10")["eval"]["train"]["root"] is None  # nothing to inherit


def test_a_malformed_section_is_not_replaced_by_assignments():
    # 'train: 5' in a config file was dropped without a word when any --set train.* was given
    from pyclr.train.presets import apply_overrides

    with pytest.raises(ValueError, match=r"train: expected a section of key: value options, got 5"):
        apply_overrides({"train": 5}, ["train.epochs=2"])
    assert apply_overrides({"train": None}, ["train.epochs=2"]) == {"train": {"epochs": 2}}
