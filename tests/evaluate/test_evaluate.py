"""Linear probe, k-NN accuracy and decodability on constructed data whose answer is known."""
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from pyclr.evaluate import decodability, extract_features, knn_accuracy, linear_probe
from pyclr.models import ProjectionHead


def blobs(n, d, classes, spread, seed):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=gen) * 3
    y = torch.randint(0, classes, (n,), generator=gen)
    return centres[y] + spread * torch.randn(n, d, generator=gen), y


def test_probe_separable_and_chance():
    x, y = blobs(600, 16, 5, 0.3, seed=0)
    assert linear_probe(x, y).accuracy == 1.0
    noise = torch.randn(600, 16, generator=torch.Generator().manual_seed(1))
    result = linear_probe(noise, y)
    assert result.accuracy < 0.4  # 5 classes: chance is 0.2; nothing to learn from noise


def test_probe_matches_sklearn():
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = blobs(1500, 8, 10, 3.0, seed=2)  # overlapping classes: accuracy well below 1
    gen = torch.Generator().manual_seed(3)
    order = torch.randperm(1500, generator=gen)
    train, test = order[:1200], order[1200:]
    ours = linear_probe(x[train], y[train], x[test], y[test], weight_decay=1e-3)
    mean, std = x[train].mean(0), x[train].std(0, unbiased=False)
    # sklearn's C multiplies the summed loss: C = 1 / (weight_decay * n)
    clf = sklearn.LogisticRegression(C=1 / (1e-3 * 1200), max_iter=2000, tol=1e-8)
    clf.fit(((x[train] - mean) / std).numpy(), y[train].numpy())
    theirs = clf.score(((x[test] - mean) / std).numpy(), y[test].numpy())
    assert 0.3 < ours.accuracy < 0.99
    assert abs(ours.accuracy - theirs) <= 0.01, (ours.accuracy, theirs)
    # the returned classifier acts on raw features
    assert ours.predict(x[test]).eq(y[test]).float().mean().item() == pytest.approx(ours.accuracy)


def test_probe_selects_weight_decay_and_is_deterministic():
    x, y = blobs(400, 64, 4, 4.0, seed=4)
    a = linear_probe(x, y, weight_decay=[1e-6, 1e-1, 10.0])
    b = linear_probe(x, y, weight_decay=[1e-6, 1e-1, 10.0])
    assert a.weight_decay in (1e-6, 1e-1, 10.0) and a.accuracy == b.accuracy
    assert torch.equal(a.weight, b.weight)
    assert a.n_train + a.n_test == 400 and a.n_test == 80


def test_probe_reports_each_decays_validation_accuracy():
    x, y = blobs(400, 32, 4, 6.0, seed=5)
    grid = [1e-6, 1e-3, 1e-1, 10.0]
    result = linear_probe(x, y, weight_decay=grid)
    scores = result.validation_accuracy
    assert list(scores) == grid and all(0 <= v <= 1 for v in scores.values())
    assert len({v * 64 for v in scores.values()} - set(range(65))) == 0  # 64 validation rows
    assert result.weight_decay == max(grid, key=lambda wd: (scores[wd], wd))  # ties: the larger
    assert scores[10.0] < max(scores.values())  # a penalty that large underfits overlapping blobs
    assert linear_probe(x, y, weight_decay=1e-3).validation_accuracy == {}  # one decay: no selection


def test_probe_default_grid_is_the_one_the_examples_used():
    # The committed example results chose among these decays: widening the default changes them.
    import inspect
    default = inspect.signature(linear_probe).parameters["weight_decay"].default
    assert default == (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
    x, y = blobs(300, 8, 3, 1.0, seed=6)
    assert list(linear_probe(x, y).validation_accuracy) == list(default)


def test_knn_matches_brute_force():
    x, y = blobs(300, 8, 3, 2.0, seed=5)
    tx, ty = blobs(100, 8, 3, 2.0, seed=6)
    ours = knn_accuracy(x, y, tx, ty, k=7, temperature=0.5, chunk=13)
    xn, txn = nn.functional.normalize(x, dim=1), nn.functional.normalize(tx, dim=1)
    correct = 0
    for i in range(100):
        sims = txn[i] @ xn.T
        top = sims.argsort(descending=True)[:7]
        votes = torch.zeros(3)
        for j in top:
            votes[y[j]] += torch.exp(sims[j] / 0.5)
        correct += int(votes.argmax() == ty[i])
    assert ours == correct / 100


def test_knn_small_temperatures_vote_for_the_nearest_neighbours_class():
    # exp(sim / T) overflowed float32 below T ~ 0.011: inf votes tied and class 0 won
    x = torch.tensor([[1.0, 0.05], [1.0, 0.06], [1.0, 0.07], [1.0, 0.3]])
    y = torch.tensor([1, 1, 1, 0])
    tx, ty = torch.tensor([[1.0, 0.06]] * 2), torch.tensor([1, 1])
    for temperature in (0.1, 0.011, 0.01, 1e-4, 1e-30):
        assert knn_accuracy(x, y, tx, ty, k=4, temperature=temperature) == 1.0


def test_knn_sparse_class_ids_vote_like_compact_ones():
    # votes were a (chunk, largest id + 1) matrix: ids near 1e12 asked for terabytes
    x, y = blobs(300, 8, 3, 2.0, seed=5)
    tx, ty = blobs(100, 8, 3, 2.0, seed=6)
    ids = torch.tensor([7, 10**12, 3])
    assert knn_accuracy(x, ids[y], tx, ids[ty], k=7) == knn_accuracy(x, y, tx, ty, k=7)


def test_knn_perfect_on_clusters():
    x, y = blobs(200, 8, 4, 0.05, seed=7)
    assert knn_accuracy(x, y, x, y, k=5) == 1.0


class Labeled(Dataset):
    """Images whose pixels encode two labels: 'a' in the mean of channel 0, 'b' random."""

    def __init__(self, n):
        gen = torch.Generator().manual_seed(8)
        self.a = torch.randint(0, 3, (n,), generator=gen)
        self.b = torch.randint(0, 3, (n,), generator=gen)
        self.x = torch.randn(n, 2, 4, 4, generator=gen) * 0.1
        self.x[:, 0] += self.a.view(-1, 1, 1).float()

    def __len__(self):
        return len(self.a)

    def __getitem__(self, i):
        return self.x[i], {"a": self.a[i], "b": self.b[i]}


class MeanEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x.mean((2, 3)) * self.scale


def test_decodability_reads_every_layer():
    data = Labeled(400)
    head = ProjectionHead(2, 8, 4, num_layers=2, batch_norm=False)
    result = decodability(MeanEncoder(), head, data, ["a", "b"])
    assert set(result) == {0, 1, 2}
    assert result[0]["a"] == 1.0            # the label is linear in the representation
    assert all(r["b"] < 0.6 for r in result.values())  # a random label is not
    split = (torch.arange(300), torch.arange(300, 400))
    only = decodability(MeanEncoder(), head, data, ["a"], splits={"a": split})
    assert only[0]["a"] == 1.0


@pytest.mark.parametrize("split, error, message", [
    ((torch.arange(300).float() + 0.5, torch.arange(300, 400)), TypeError, "integer train indices"),
    ((torch.arange(300), torch.arange(-100, 0)), ValueError, r"test indices in 0\.\.399 .* got -100\.\.-1"),
    ((torch.arange(300), torch.arange(300, 401)), ValueError, r"got 300\.\.400"),
    ((torch.arange(300), torch.arange(250, 400)), ValueError, "overlap"),
    ((torch.arange(300), torch.tensor([], dtype=torch.long)), ValueError, "non-empty"),
    (torch.arange(300), TypeError, "a pair"),
])
def test_decodability_refuses_bad_splits_before_extracting(split, error, message, monkeypatch):
    # a float index was truncated and a negative one wrapped around, silently
    module = sys.modules["pyclr.evaluate.decodability"]  # the package's name is the function's
    monkeypatch.setattr(module, "extract_features",
                        lambda *a, **k: pytest.fail("features extracted before the splits were checked"))
    with pytest.raises(error, match=r"splits\['a'\]: .*" + message):
        decodability(MeanEncoder(), ProjectionHead(2, 8, 4), Labeled(400), ["a"], splits={"a": split})


@pytest.mark.parametrize("options,message", [
    (dict(max_iters=10), r"probe_options: unknown options \['max_iters'\]; it takes weight_decay, max_iter"),
    (dict(label="a"), r"probe_options: unknown options \['label'\]"),  # was: 'the items carry one bare label'
])
def test_decodability_names_probe_options_it_cannot_pass(options, message, monkeypatch):
    module = sys.modules["pyclr.evaluate.decodability"]
    monkeypatch.setattr(module, "extract_features", lambda *a, **k: pytest.fail("features extracted first"))
    with pytest.raises(ValueError, match=message):  # a raw TypeError from linear_probe() after extraction
        decodability(MeanEncoder(), ProjectionHead(2, 8, 4), Labeled(400), ["a"], **options)


def test_extract_features_restores_mode_and_orders():
    enc = MeanEncoder().train()
    feats, labels = extract_features(enc, Labeled(50), batch_size=7)
    assert enc.training and feats.shape == (50, 2) and labels["a"].shape == (50,)
    assert torch.allclose(feats, Labeled(50).x.mean((2, 3)))


def test_extract_features_of_an_encoder_without_parameters():
    # a bare StopIteration before: the device was read off the first parameter
    feats, labels = extract_features(nn.Flatten(), Labeled(20), batch_size=8)
    assert torch.equal(feats, Labeled(20).x.flatten(1)) and feats.device.type == "cpu"
    with pytest.raises(TypeError, match="encoder, head: expected torch.nn.Modules, got function"):
        extract_features(lambda x: x, Labeled(20))


def test_probe_from_encoder_and_dataset():
    data = Labeled(300)
    assert linear_probe((MeanEncoder(), data), label="a").accuracy == 1.0
    with pytest.raises(ValueError, match="label: the items carry several labels"):
        linear_probe((MeanEncoder(), data))


def test_probes_take_extract_features_labels_as_they_come():
    # items with several labels give a dict of label tensors; `label` picks one for both sets
    data = Labeled(300)
    x, labels = extract_features(MeanEncoder(), data)
    tx, tlabels = extract_features(MeanEncoder(), Labeled(100))
    assert linear_probe(x, labels, tx, tlabels, label="a").accuracy == 1.0
    for name in "ab":
        assert knn_accuracy(x, labels, tx, tlabels, k=5, label=name) == knn_accuracy(x, labels[name], tx,
                                                                                    tlabels[name], k=5)
    with pytest.raises(ValueError, match="label: the items carry several labels"):
        linear_probe(x, labels, tx, tlabels)
    with pytest.raises(ValueError, match="label: expected one of a, b, got 'c'"):
        knn_accuracy(x, labels, tx, tlabels, label="c")
    # a bare label tensor answers to None or "label" only (another name was silently ignored)
    with pytest.raises(ValueError, match="label: the items carry one bare label, not named ones; got 'digit'"):
        knn_accuracy(x, labels["a"], tx, tlabels["a"], label="digit")
    assert linear_probe(x, labels["a"], tx, tlabels["a"], label="label").accuracy == 1.0


def test_bad_input():
    x, y = blobs(20, 4, 2, 1.0, seed=9)
    with pytest.raises(ValueError, match=r"features: expected integer labels of shape \(20,\)"):
        linear_probe(x, y[:10])
    with pytest.raises(ValueError, match=r"features: expected integer labels of shape \(20,\), got list"):
        linear_probe(x, ["cat", "dog"] * 10)
    with pytest.raises(ValueError, match="features: contains NaN"):
        linear_probe(torch.full((20, 4), float("nan")), y)
    with pytest.raises(ValueError, match=r"test_fraction: expected a finite number in \(0, 1\)"):
        linear_probe(x, y, test_fraction=1.5)
    with pytest.raises(ValueError, match=r"weight_decay: expected a finite number in \[0, "):
        linear_probe(x, y, weight_decay=-1.0)
    for decay, error in ((float("inf"), ValueError), ([1e-4, -1.0], ValueError), (None, TypeError),
                         (torch.tensor(1e-4), TypeError), ([], TypeError)):
        with pytest.raises(error, match=r"weight_decay: expected a finite number (>= 0|in \[0, )"):
            linear_probe(x, y, weight_decay=decay)
    # 1.5 was manual_seed's "expected a long", 2**64 its overflow
    for seed, error in ((1.5, TypeError), (-1, ValueError), (None, TypeError), (2**64, ValueError)):
        with pytest.raises(error, match=r"seed: expected an int in 0..2\*\*63-2"):
            linear_probe(x, y, seed=seed)
    for max_iter, error in ((0, ValueError), (-1, ValueError), (10.5, TypeError), (None, TypeError)):
        with pytest.raises(error, match="max_iter: expected an int >= 1"):  # 0 and -1 returned an unfitted probe
            linear_probe(x, y, max_iter=max_iter)
    assert linear_probe(x, y, weight_decay=np.logspace(-4, -2, 3)).weight_decay in (1e-4, 1e-3, 1e-2)
    with pytest.raises(ValueError, match="labels: expected class ids 0..C-1, got ids up to 100000000 for 20 rows"):
        linear_probe(x, y * 10**8)  # asked for a 100,000,000-row weight matrix
    with pytest.raises(ValueError, match="test_features: expected 4 columns"):
        linear_probe(x, y, torch.randn(5, 3), y[:5])
    with pytest.raises(ValueError, match="k: expected an int >= 1"):
        knn_accuracy(x, y, x, y, k=0)
    with pytest.raises(ValueError, match="chunk: expected an int >= 1, got -1"):
        knn_accuracy(x, y, x, y, chunk=-1)
    with pytest.raises(ValueError, match="label_names: expected a non-empty list"):
        decodability(MeanEncoder(), ProjectionHead(2, 4, 2), Labeled(10), "a")


def test_pick_label_names_what_bare_labels_answer_to():
    from pyclr.evaluate.features import pick_label

    bare = torch.tensor([0, 1, 2])
    assert pick_label(bare, None) is bare and pick_label(bare, "label") is bare
    with pytest.raises(ValueError, match="label: the items carry one bare label, not named ones; got 'colour'"):
        pick_label(bare, "colour")
    named = {"colour": bare, "scale": bare + 1}
    assert pick_label(named, "scale") is named["scale"]
    with pytest.raises(ValueError, match="label: the items carry several labels"):
        pick_label(named, None)


def test_layer_activations_keep_the_leading_dimensions():
    from pyclr.evaluate import layer_activations

    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(12, 6))
    encoder.feature_dim = 6
    head = ProjectionHead(6, 5, 4, num_layers=2)
    images = torch.randn(3, 2, 3, 2, 2)  # 3 items x 2 views of (3, 2, 2) images
    layers = layer_activations(encoder, images, head=head)
    assert [tuple(layer.shape) for layer in layers] == [(3, 2, 6), (3, 2, 5), (3, 2, 4)]
    head.eval()
    with torch.no_grad():
        direct = head(encoder(images.reshape(6, 3, 2, 2)), return_all=True)
    for got, want in zip(layers, direct):
        assert torch.allclose(got.reshape(6, -1), want)
    (only,) = layer_activations(encoder, images)
    assert only.shape == (3, 2, 6)
    with pytest.raises(ValueError, match="images: expected a tensor of shape \\(..., C, H, W\\)"):
        layer_activations(encoder, torch.randn(3, 2, 2))


def test_probe_fits_features_that_carry_a_graph_or_come_from_inference_mode():
    # features straight from encoder(x) require grad: every L-BFGS step backpropagated into their
    # graph ("backward through the graph a second time"); under inference_mode nothing had a grad
    x, y = blobs(120, 6, 3, 0.5, seed=4)
    expected = linear_probe(x, y, weight_decay=1e-4)
    graph = (x.clone().requires_grad_() * 1.0)
    for result in (linear_probe(graph, y, weight_decay=1e-4), linear_probe(graph, y)):
        assert result.accuracy > 0.9 and not result.weight.requires_grad
    torch.testing.assert_close(linear_probe(graph, y, weight_decay=1e-4).weight, expected.weight)
    with torch.inference_mode():
        torch.testing.assert_close(linear_probe(x, y, weight_decay=1e-4).weight, expected.weight)


@pytest.mark.parametrize("scale,dtype", [(1e20, torch.float32), (1e-20, torch.float32),
                                         (1e300, torch.float64), (1e-300, torch.float64)])
def test_probe_and_knn_do_not_depend_on_the_features_scale(scale, dtype):
    # the probe standardises and k-NN compares directions, but their float32 arithmetic overflowed
    # (1e20: norms inf, k-NN votes NaN) or underflowed (1e-300 -> 0) before that: wrong accuracies
    x, y = blobs(200, 6, 4, 1.5, seed=5)
    tx, ty = x[:100] + 0.1 * torch.randn(100, 6, generator=torch.Generator().manual_seed(7)), y[:100]
    probe = linear_probe(x, y, tx, ty, weight_decay=1e-4)
    knn = knn_accuracy(x, y, tx, ty, k=5)
    big, tbig = x.to(dtype) * scale, tx.to(dtype) * scale
    scaled = linear_probe(big, y, tbig, ty, weight_decay=1e-4)
    assert scaled.accuracy == pytest.approx(probe.accuracy, abs=0.011)
    assert scaled.weight.dtype == dtype and scaled.predict(tbig).eq(ty).sum().item() / len(ty) == scaled.accuracy
    assert knn_accuracy(big, y, tbig, ty, k=5) == knn


def test_probe_of_extreme_and_constant_columns():
    # values near float32's largest overflowed when the mean was subtracted before the rescaling
    big = torch.tensor([[3e38, 1.0], [3e38, 2.0], [-3e38, 3.0], [3e38, 4.0]] * 5)
    result = linear_probe(big, torch.tensor([0, 1, 0, 1] * 5), weight_decay=1e-3)
    assert result.weight.isfinite().all() and result.bias.isfinite().all()
    # constant float64 columns: rounding noise in their spread was standardised to +-1 (w ~ 1e14)
    x = torch.full((50, 3), 0.1, dtype=torch.float64)
    x[:, 1] = 1 / 3
    x[:, 2] = torch.randn(50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    result = linear_probe(x, (x[:, 2] > 0).long(), weight_decay=1e-3)
    assert result.accuracy == 1.0 and result.weight[:, :2].abs().max() < 1 and result.bias.abs().max() < 10


def test_probe_with_too_few_rows_to_validate_says_so():
    # 2 rows at test_fraction 0.2 left 1 training row, then 0 to fit each decay on: NaN
    # weights, a 'degrees of freedom' warning and every decay scored 0
    x, y = torch.randn(2, 5), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="weight_decay: choosing among 5 decays holds out 20% of the training "
                                         "rows for validation, and there is 1: pass one weight_decay"):
        linear_probe(x, y)
    assert linear_probe(x, y, weight_decay=1e-3).weight.isfinite().all()


def test_features_need_columns_and_a_test_set_may_have_one_row():
    x, y = blobs(20, 4, 2, 0.3, seed=8)
    for fn in (lambda a, b: linear_probe(a, y, b, y[:4]), lambda a, b: knn_accuracy(a, y, b, y[:4], k=3)):
        with pytest.raises(ValueError, match=r"expected at least one feature column, got shape \(20, 0\)"):
            fn(x[:, :0], x[:4, :0])  # an accuracy of nothing was reported
    assert linear_probe(x, y, x[:1], y[:1], weight_decay=1e-3).n_test == 1
    assert knn_accuracy(x, y, x[:1], y[:1], k=3) == 1.0


def test_extract_features_names_items_that_are_not_image_label_pairs():
    from torch.utils.data import TensorDataset

    encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    images = torch.rand(6, 1, 8, 8)
    for dataset in (TensorDataset(images), images):  # was: unpack errors, or rows taken as image and label
        with pytest.raises(ValueError, match=r"dataset: expected items \(image, labels\)"):
            extract_features(encoder, dataset, batch_size=2)
    with pytest.raises(ValueError, match="dataset: expected numeric labels .* got strs"):
        extract_features(encoder, [(image, "a") for image in images])


def test_probe_decay_range_and_predict_input_are_checked():
    x, y = blobs(30, 3, 2, 0.3, seed=9)
    with pytest.raises(ValueError, match=r"weight_decay: expected a finite number in \[0, 1000000.0\], got 1e\+22"):
        linear_probe(x, y, weight_decay=1e22)  # passed the check, then L-BFGS's first step gave NaN weights
    assert linear_probe(x, y, weight_decay=1e6).weight.isfinite().all()
    result = linear_probe(x, y, weight_decay=1e-3)
    with pytest.raises(TypeError, match="x: expected a tensor of features, got ndarray"):
        result.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"x: expected shape \(n, 3\), got \(2, 4\)"):
        result.predict(torch.zeros(2, 4))
    assert torch.equal(result.predict(x), (x @ result.weight.T + result.bias).argmax(1))


def test_numpy_features_are_taken_as_tensors():
    # scikit-learn-style numpy features were refused ('got ndarray'); an int array names its dtype
    x, y = blobs(80, 4, 2, 0.3, seed=10)
    assert linear_probe(x.numpy(), y.numpy(), weight_decay=1e-3).accuracy == linear_probe(x, y, weight_decay=1e-3).accuracy
    assert knn_accuracy(x.numpy(), y, x.numpy(), y, k=3) == knn_accuracy(x, y, x, y, k=3)
    with pytest.raises(ValueError, match=r"features: expected a float tensor of shape \(n, d\), got int64 of shape"):
        linear_probe(x.long().numpy(), y)
    with pytest.raises(TypeError, match="features: expected a float tensor .* got list"):
        linear_probe(x.tolist(), y)


def test_probe_standardises_each_column_on_its_own_spread():
    # standardisation makes the probe blind to each column's offset and scale, but a float32
    # column of spread < 1e-6 was squeezed by an absolute floor, one constant at 98765.4 became
    # a feature of ~7800 (its float32 mean's rounding over the floor) that stalled L-BFGS at
    # chance, and in float64 a column 1e9 times wider than the rest squeezed all the others
    x, y = blobs(600, 8, 4, 4.0, seed=11)
    tx, ty = x[:150], y[:150]
    x, y = x[150:], y[150:]
    expected = linear_probe(x, y, tx, ty, weight_decay=1e-3)
    scale = torch.tensor([1e-7, 1.0, 1e9, 1.0, 1e-7, 1.0, 1.0, 1.0])
    offset = torch.tensor([2e-3, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0])
    constant = torch.full((len(x), 1), 98765.4)
    for dtype in (torch.float32, torch.float64):
        moved, tmoved = ((a.double() * scale.double() + offset.double()).to(dtype) for a in (x, tx))
        result = linear_probe(moved, y, tmoved, ty, weight_decay=1e-3)
        assert result.accuracy == pytest.approx(expected.accuracy, abs=0.014), dtype  # 2 of 150
        padded = linear_probe(torch.cat([x.to(dtype), constant.to(dtype)], 1), y,
                              torch.cat([tx.to(dtype), constant[:150].to(dtype)], 1), ty, weight_decay=1e-3)
        assert padded.accuracy == pytest.approx(expected.accuracy, abs=0.014), dtype
        assert torch.all(padded.weight[:, -1] == 0)  # a constant column carries nothing


def test_probe_tells_rounding_from_data_by_the_features_dtype():
    # a float64 column 1.7e9 +- 1e-3 (thousands of float64 ulps) that separates the classes was
    # taken as constant; float32 columns of one-ulp jitter were standardised to +-1 noise
    gen = torch.Generator().manual_seed(14)
    y = torch.randint(0, 2, (400,), generator=gen)
    wide = (1.7e9 + 1e-3 * (2 * y.double() - 1))[:, None]
    noise = torch.randn(400, 3, generator=gen, dtype=torch.float64)
    result = linear_probe(torch.cat([wide, noise], 1), y, weight_decay=1e-3)
    assert result.accuracy == 1.0
    x, y = blobs(400, 8, 4, 4.0, seed=15)
    expected = linear_probe(x, y, weight_decay=1e-3).accuracy
    ulp = torch.finfo(torch.float32).eps * 0.0625  # one ulp of 0.1
    jitter = 0.1 + ulp * torch.randint(-1, 2, (400, 40), generator=gen).float()
    assert jitter.std(0).min() > 0
    assert linear_probe(torch.cat([x, jitter], 1), y, weight_decay=1e-3).accuracy == pytest.approx(expected, abs=0.025)


def test_probe_says_whether_it_converged():
    x, y = blobs(300, 8, 3, 2.0, seed=12)
    result = linear_probe(x, y, weight_decay=1e-3)
    assert result.converged and 1 <= result.iterations < 200
    with pytest.warns(RuntimeWarning, match=r"linear_probe: the fit \(weight_decay=0.001\) reached its limit "
                                            r"\(max_iter=2\) before converging; pass a larger max_iter"):
        short = linear_probe(x, y, weight_decay=1e-3, max_iter=2)
    assert not short.converged and 1 <= short.iterations <= 2  # or its limit of 1.25 x max_iter evaluations
    # torch checks its limits before its tolerances: a fit that converges at the limit itself,
    # and one that starts at the optimum with max_iter=1, are converged all the same
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact = linear_probe(x, y, weight_decay=1e-3, max_iter=result.iterations)
        assert exact.converged and torch.equal(exact.weight, result.weight)
        assert linear_probe(x, torch.zeros_like(y), weight_decay=1e-3, max_iter=1).converged


def test_probe_accuracies_are_exact_fractions():
    # the mean of a float32 0/1 vector gave 0.7649999856948853 for 153 of 200
    x, y = blobs(1000, 8, 10, 3.0, seed=2)
    result = linear_probe(x, y, weight_decay=1e-3)
    assert 0.3 < result.accuracy < 0.99
    assert (result.n_test, result.n_train) == (200, 800)
    assert result.accuracy == round(result.accuracy * 200) / 200
    assert result.train_accuracy == round(result.train_accuracy * 800) / 800
    assert all(v == round(v * 160) / 160 for v in result.validation_accuracy.values())  # 20% of 800


def test_knn_of_float64_features_compares_in_float64():
    # two training rows whose cosines with the test row differ by 2e-8: equal in float32,
    # where the tie went to the smaller class id (0), the wrong neighbour
    x = torch.tensor([[1e4, -1.0], [1e4, 1.0]], dtype=torch.float64)
    test = torch.tensor([[1e4, 0.9]], dtype=torch.float64)
    assert knn_accuracy(x, torch.tensor([0, 1]), test, torch.tensor([1]), k=1) == 1.0


def test_labels_of_wide_unsigned_and_complex_dtypes():
    # uint64 labels reached torch's min ("min_all" not implemented for 'UInt64'); complex ones passed
    # the integer check; a bad device string gave torch's message, which names no argument
    x, y = blobs(40, 4, 2, 0.3, seed=13)
    wide = y.numpy().astype(np.uint64)
    assert knn_accuracy(x, wide, x, wide, k=3) == knn_accuracy(x, y, x, y, k=3)
    assert linear_probe(x, wide, weight_decay=1e-3).accuracy == linear_probe(x, y, weight_decay=1e-3).accuracy
    with pytest.raises(ValueError, match=r"features: expected integer labels of shape \(40,\), got \(\(40,\), "
                                         r"torch.complex64\)"):
        linear_probe(x, y.to(torch.complex64))
    with pytest.raises(ValueError, match="device: expected a device such as 'cpu'"):
        linear_probe(x, y, device="nope")


def test_knn_votes_are_weighted_by_similarity_over_temperature():
    # blobs so far apart that every vote agreed let an unweighted vote or a temperature of 1
    # pass: here one very near class-0 neighbour faces two farther class-1 ones
    x = torch.tensor([[1.0, 0.0], [0.5, 1.0], [0.5, -1.0]])
    y, test, label = torch.tensor([0, 1, 1]), torch.tensor([[1.0, 0.01]]), torch.tensor([0])
    # cosines 1.0 against 0.45 twice: exp(1/T) outweighs 2 exp(0.45/T) below T ~ 0.8
    assert knn_accuracy(x, y, test, label, k=3, temperature=0.01) == 1.0
    assert knn_accuracy(x, y, test, label, k=3, temperature=10.0) == 0.0  # nearly a plain majority
