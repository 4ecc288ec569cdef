import pytest
import torch

from pyclr.analysis import pca_embedding


def test_matches_scikit_learn_up_to_sign():
    decomposition = pytest.importorskip("sklearn.decomposition")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 12, generator=g, dtype=torch.float64) @ torch.randn(12, 12, generator=g, dtype=torch.float64)
    ours = pca_embedding(x, 3)
    ref = decomposition.PCA(3).fit(x.numpy())
    signs = torch.sign((ours.components * torch.from_numpy(ref.components_)).sum(1))
    assert torch.allclose(ours.components, signs.view(-1, 1) * torch.from_numpy(ref.components_), atol=1e-8)
    assert torch.allclose(ours.coords, signs * torch.from_numpy(ref.transform(x.numpy())), atol=1e-8)
    assert torch.allclose(ours.explained_variance_ratio, torch.from_numpy(ref.explained_variance_ratio_))


def test_points_on_a_line_have_one_component():
    g = torch.Generator().manual_seed(1)
    direction = torch.tensor([3.0, -4.0, 0.0]) / 5
    t = torch.randn(50, 1, generator=g)
    result = pca_embedding(t * direction + torch.tensor([1.0, 2.0, 3.0]), 2)
    assert result.explained_variance_ratio[0] == pytest.approx(1.0, abs=1e-6)
    assert result.explained_variance_ratio[1] == pytest.approx(0.0, abs=1e-6)
    # the sign rule makes the largest loading (|-4/5|) positive
    assert torch.allclose(result.components[0], -direction, atol=1e-6)
    assert torch.allclose(result.coords[:, 0], -(t[:, 0] - t.mean()), atol=1e-5)
    assert torch.allclose(result.mean, torch.tensor([1.0, 2.0, 3.0]) + t.mean() * direction, atol=1e-6)


@pytest.mark.parametrize("value,dtype", [(1.0, torch.float32), (0.1, torch.float64), (0.1, torch.float32)])
def test_constant_data_gives_zeros_not_nan(value, dtype):
    # the float64 mean of seven rows of 0.1 is not 0.1: the residue gave ratios [1, 0]
    result = pca_embedding(torch.full((7, 4), value, dtype=dtype), 2)
    assert torch.equal(result.explained_variance_ratio, torch.zeros(2, dtype=dtype))
    assert torch.equal(result.coords, torch.zeros(7, 2, dtype=dtype))


@pytest.mark.parametrize("features, k, match", [
    (torch.randn(10), 2, "features: expected a float tensor of shape \\(n, d\\)"),
    (torch.ones(4, 3, dtype=torch.long), 2, "features: expected a float tensor"),
    (torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), 1, "features: contains NaN"),
    (torch.randn(10, 3), 4, "n_components: expected an int in 1..3"),
    (torch.randn(10, 3), 0, "n_components"),
])
def test_bad_inputs(features, k, match):
    with pytest.raises(ValueError, match=match):
        pca_embedding(features, k)


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_ratios_do_not_depend_on_the_scale(scale):
    # the squared singular values overflowed float64 (NaN ratios) or underflowed (ratios of 0)
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(pca_embedding(x * scale).explained_variance_ratio,
                               pca_embedding(x).explained_variance_ratio)


def test_numpy_features_are_taken_as_tensors():
    x = torch.randn(20, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(pca_embedding(x.numpy()).components, pca_embedding(x).components)
    with pytest.raises(TypeError, match=r"features: expected a float tensor \(or numpy array\) .* got list"):
        pca_embedding(x.tolist())
