"""The shared scalar checks (pyclr/_checks.py): numpy scalars pass as the Python values they
stand for, bools are not numbers, a wrong type is a TypeError and a value out of range a
ValueError, each naming the argument."""
import math

import numpy as np
import pytest
import torch

from pyclr._checks import (check_bool, check_int, check_nonnegative, check_positive, check_real, check_size,
                           is_int, is_real)


def test_numpy_scalars_pass_as_python_values():
    for value in (np.int8(3), np.uint16(3), np.int64(3), 3):
        out = check_int("n", value, 1, 5)
        assert out == 3 and type(out) is int
    for value in (np.float32(0.5), np.float64(0.5), 0.5, np.int64(0)):
        out = check_real("x", value, 0, 1)
        assert type(out) is float
    assert check_bool("flag", np.bool_(True)) is True and check_bool("flag", False) is False
    assert check_size("size", np.int64(7)) == (7, 7) and check_size("size", (np.int32(2), 3)) == (2, 3)


@pytest.mark.parametrize("value", [True, np.bool_(False)])
def test_bools_are_not_numbers(value):
    assert not is_int(value) and not is_real(value)
    with pytest.raises(TypeError, match="n: expected an int"):
        check_int("n", value)
    with pytest.raises(TypeError, match="x: expected a number"):
        check_real("x", value)


@pytest.mark.parametrize("call, error, message", [
    (lambda: check_int("k", 2.0, 1), TypeError, r"k: expected an int >= 1, got 2\.0"),
    (lambda: check_int("k", "3"), TypeError, r"k: expected an int, got '3'"),
    (lambda: check_int("k", torch.tensor(3)), TypeError, "k: expected an int, got Tensor"),
    (lambda: check_int("k", 0, 1), ValueError, "k: expected an int >= 1, got 0"),
    (lambda: check_int("k", 9, 0, 4), ValueError, r"k: expected an int in 0\.\.4, got 9"),
    (lambda: check_int("seed", -1, 0, 2 ** 63 - 1), ValueError, r"seed: expected an int in 0\.\.2\*\*63-1"),
    (lambda: check_real("x", math.nan), ValueError, "x: expected a finite number, got nan"),
    (lambda: check_real("x", math.inf, 0), ValueError, "x: expected a finite number >= 0, got inf"),
    (lambda: check_real("p", 1.0, 0, 1, inclusive=False), ValueError, r"p: expected a finite number in \(0, 1\)"),
    (lambda: check_real("p", 1.5, 0, 1), ValueError, r"p: expected a finite number in \[0, 1\], got 1\.5"),
    (lambda: check_positive("t", 0), ValueError, "t: expected a finite number > 0, got 0.0"),
    (lambda: check_nonnegative("w", -1e-9), ValueError, "w: expected a finite number >= 0"),
    (lambda: check_real("x", None), TypeError, "x: expected a number, got None"),
    (lambda: check_bool("flag", "no"), TypeError, "flag: expected a bool, got 'no'"),
    (lambda: check_bool("flag", 1), TypeError, "flag: expected a bool, got 1"),
    (lambda: check_size("size", 0), ValueError, "size: expected sizes >= 1, got 0"),
    # every resize and crop of pyclr takes its size here: 10**6 asked an augmentation for 16 TB
    (lambda: check_size("size", (8192, 8193)), ValueError, r"size: expected sizes of at most 8192 pixels, got \(8192, 8193\)"),
    (lambda: check_size("size", (2, 3, 4)), TypeError, r"size: expected an int or an \(H, W\) pair of ints"),
    (lambda: check_size("size", 2.5), TypeError, r"size: expected an int or an \(H, W\) pair of ints, got 2\.5"),
    (lambda: check_real("lr", 10 ** 400), ValueError, "lr: expected a finite number, got inf"),  # was OverflowError
    (lambda: check_int("seed", -1, 0, 2 ** 63 - 2), ValueError, r"seed: expected an int in 0\.\.2\*\*63-2, got -1"),
])
def test_errors_name_the_argument_and_what_was_expected(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_public_api_takes_numpy_scalars():
    """Sweeps over np.arange / np.logspace pass numpy scalars: every layer takes them (models
    and pyclr.train refused them, with a message showing the very number they refused)."""
    from torch import nn
    from torch.utils.data import TensorDataset

    from pyclr.cluster import kmeans, ward
    from pyclr.data import InMemory
    from pyclr.data.augment import SimCLRAugment
    from pyclr.evaluate import extract_features, knn_accuracy
    from pyclr.models import ProjectionHead, SmallConvNet, resnet18

    assert resnet18(width=np.int64(2), in_channels=np.int64(1)).feature_dim == 1024
    head = ProjectionHead(np.int64(8), np.int32(4), np.int64(2), num_layers=np.int64(2), batch_norm=np.bool_(False))
    assert head(torch.randn(3, 8)).shape == (3, 2)
    assert SmallConvNet(in_channels=np.int64(1), input_size=np.int64(16))(torch.randn(2, 1, 16, 16)).shape == (2, 128)
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    assert kmeans(x, np.int64(3), n_init=np.int64(1), max_iter=np.int64(5), seed=np.int64(1)).centroids.shape == (3, 3)
    y = torch.arange(40) % 2
    assert 0 <= knn_accuracy(x, y, x, y, k=np.int64(3), temperature=np.float32(0.1)) <= 1
    data = TensorDataset(torch.rand(6, 1, 8, 8), torch.zeros(6, dtype=torch.long))
    assert len(InMemory(data, batch_size=np.int64(4))) == 6  # reached DataLoader's own refusal
    feats, _ = extract_features(nn.Flatten(), data, batch_size=np.int64(4))
    assert feats.shape == (6, 64)
    augment = SimCLRAugment(8, blur_kernel=np.int64(3), image_channels=np.int64(1))
    assert type(augment.blur_kernel) is int and type(augment.image_channels) is int
    assert ward(x, [np.int64(2), 3]).keys() == {2, 3} and all(type(k) is int for k in ward(x, [np.int64(2)]))


def test_train_takes_numpy_scalars_and_records_python_numbers(tmp_path):
    import json

    import pyclr
    from pyclr.models import SmallConvNet

    data = [(torch.rand(1, 16, 16), 0) for _ in range(8)]
    # feature_dim sizes the default head: a numpy one was "head: give ... an int feature_dim"
    pyclr.train(SmallConvNet(input_size=16, feature_dim=np.int64(32)), data, epochs=np.int64(1), batch_size=np.int64(4), seed=np.int64(3),
                lr=np.float32(0.1), temperature=np.float64(0.5), progress=np.bool_(False), out_dir=str(tmp_path))
    config = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["config"]
    assert {k: type(config[k]) for k in ("epochs", "batch_size", "seed", "lr", "temperature")} == \
        dict(epochs=int, batch_size=int, seed=int, lr=float, temperature=float)
    assert json.loads(json.dumps(config)) == config  # plain Python numbers


@pytest.mark.parametrize("option, value, error, message", [
    ("seed", -1, ValueError, r"seed: expected an int in 0\.\.2\*\*63-1, got -1"),
    ("lr", math.nan, ValueError, r"lr: expected a finite number in \[0, 10000000000.0\], got nan"),
    ("weight_decay", -1.0, ValueError, r"weight_decay: expected a finite number in \[0, 10000000000.0\]"),
    ("warmup_epochs", -1.0, ValueError, "warmup_epochs: expected a finite number >= 0"),
    ("momentum", 2.0, ValueError, r"momentum: expected a finite number in \[0, 1\], got 2\.0"),
    ("num_workers", -1, ValueError, "num_workers: expected an int >= 0"),
    ("compile", "no", TypeError, "compile: expected a bool, got 'no'"),
    ("resume", "no", TypeError, "resume: expected a bool"),
    ("channels_last", 1, TypeError, "channels_last: expected a bool"),
])
def test_train_refuses_bad_options_before_training(option, value, error, message, monkeypatch):
    """These were taken as they came: a negative weight decay or warm-up, momentum 2 and
    compile="no" (truthy: it compiled) trained without a word."""
    import pyclr
    from pyclr.models import SmallConvNet
    from pyclr.train import loop

    monkeypatch.setattr(loop, "make_optimizer", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(error, match=message):
        pyclr.train(SmallConvNet(input_size=16), [(torch.rand(1, 16, 16), 0)] * 8, epochs=1, batch_size=4,
                    progress=False, **{option: value})
