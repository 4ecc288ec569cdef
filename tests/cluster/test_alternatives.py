"""Ward and bisecting K-Means (the [Re] paper's Experiment 3) via scikit-learn."""
import numpy as np
import pytest
import torch

from pyclr.cluster import bisecting, pixel_features, ward

from .test_kmeans import TINY_CASES, blobs, is_relabelling, tiny_and_ordinary

pytest.importorskip("sklearn")


def features(batch=2, h=8, w=9, c=12, seed=0):
    return pixel_features(torch.randn(batch, c, h, w, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("method", [
    lambda x, k: ward(x, k),
    lambda x, k: ward(x, k, connectivity="grid"),
    lambda x, k: bisecting(x, k, seed=3),
], ids=["ward", "ward-grid", "bisecting"])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_k_clusters_per_image(method, k):
    x = features()
    result = method(x, k)
    assert result.labels.shape == (2, 8, 9) and result.labels.dtype == torch.int64
    assert result.centroids.shape == (2, k, 12) and result.inertia.shape == (2,)
    for b in range(2):
        assert sorted(result.labels[b].unique().tolist()) == list(range(k))
        means = torch.stack([x[b][result.labels[b] == j].mean(0) for j in range(k)])
        assert torch.allclose(result.centroids[b], means, atol=1e-5)
        inertia = (x[b] - result.centroids[b][result.labels[b]]).square().sum()
        assert float(result.inertia[b]) == pytest.approx(float(inertia), rel=1e-5)


@pytest.mark.parametrize("method", [ward, bisecting])
def test_planted_clusters_on_points(method):
    x, truth = blobs(300, 4, 6, 0.2, seed=1)
    result = method(x, 4)
    assert result.labels.shape == (300,) and result.centroids.shape == (4, 6)
    assert result.inertia.dim() == 0
    assert is_relabelling(result.labels, truth)


@pytest.mark.parametrize("connectivity", [None, "grid"])
def test_ward_is_scikit_learns_partition_at_every_k_from_one_tree(connectivity):
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.image import grid_to_graph

    x = features(batch=2, h=9, w=11, seed=5)
    graph = grid_to_graph(9, 11) if connectivity else None
    several = ward(x, [6, 2, 9, 1], connectivity=connectivity)
    assert list(several) == [6, 2, 9, 1]
    for k, result in several.items():
        alone = ward(x, k, connectivity=connectivity)
        assert torch.equal(result.labels, alone.labels) and torch.equal(result.centroids, alone.centroids)
        for b in range(2):
            expected = AgglomerativeClustering(n_clusters=k, linkage="ward", connectivity=graph).fit_predict(
                x[b].reshape(-1, 12).double().numpy())
            assert is_relabelling(result.labels[b].flatten(), torch.as_tensor(expected))
            assert sorted(result.labels[b].unique().tolist()) == list(range(k))


def test_grid_connectivity_gives_connected_regions():
    x = features(batch=1, h=10, w=10, seed=2)
    labels = ward(x, 4, connectivity="grid").labels[0]
    for j in range(4):
        region = {tuple(p) for p in (labels == j).nonzero().tolist()}
        seen, stack = set(), [next(iter(region))]
        while stack:  # flood fill over 4-neighbours
            r, c = stack.pop()
            if (r, c) in seen or (r, c) not in region:
                continue
            seen.add((r, c))
            stack += [(r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)]
        assert seen == region


def test_bisecting_is_seeded():
    x = features(batch=1, seed=4)
    assert torch.equal(bisecting(x, 4, seed=7).labels, bisecting(x, 4, seed=7).labels)


def test_ward_of_a_single_point_is_one_cluster():
    # scikit-learn's ward_tree fails on one point ("empty distance matrix"; IndexError with a grid)
    assert ward(torch.randn(1, 3), 1).labels.tolist() == [0]
    single = ward(torch.randn(2, 1, 1, 3), 1, connectivity="grid")
    assert single.labels.tolist() == [[[0]], [[0]]] and single.inertia.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("call,message", [
    (lambda: ward(features(), 3, connectivity="knn"), "connectivity: expected one of None, 'grid', got 'knn'"),
    # scikit-learn takes a connectivity matrix: it was numpy's "truth value of an array is ambiguous"
    (lambda: ward(features(), 3, connectivity=np.eye(4)), "connectivity: expected one of None, 'grid', got ndarray"),
    (lambda: ward(torch.randn(50, 3), 3, connectivity="grid"), "connectivity='grid' needs"),
    (lambda: ward(features(), 0), "k: expected an int with 1 <= k <= 72"),
    (lambda: ward(features(), [2, 73]), "k: expected an int with 1 <= k <= 72"),
    (lambda: ward(features(), []), "k: expected an int or a non-empty list"),
    (lambda: bisecting(features(), 73), "k: expected an int with 1 <= k <= 72"),
    (lambda: bisecting(features(), 2, seed=-1), "seed: expected an int in 0..2\\*\\*31-1"),
    (lambda: ward(torch.randn(4, 5, 3), 2), r"x: expected a \(B, H, W, C\) or \(n, C\) tensor"),
    (lambda: ward(torch.full((6, 2), float("nan")), 2), "x: contains NaN or infinite values"),
    (lambda: ward(torch.randn(50, 3) * 1e20, 2), "x: values up to .* overflow float32 squared distances"),
    (lambda: bisecting(torch.randn(50, 3) * 1e20, 2), "x: values up to .* overflow float32 squared distances"),
])
def test_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_dtype_names_x():
    # any floating dtype passed: float8 failed inside torch's aminmax
    with pytest.raises(TypeError, match="x: expected dtype float32, bfloat16, float16 or float64"):
        ward(torch.rand(10, 2).to(torch.float8_e4m3fn), 2)


@pytest.mark.parametrize("dtype,power", TINY_CASES)
@pytest.mark.parametrize("method", [ward, lambda x, k: bisecting(x, k, seed=3)], ids=["ward", "bisecting"])
def test_tiny_features_are_clustered_as_their_scaled_up_copies(method, dtype, power):
    x, scaled = tiny_and_ordinary(dtype, power)
    result, expected = method(scaled, 4), method(x, 4)
    assert torch.equal(result.labels, expected.labels)
    assert len(result.labels[0].unique()) == 4
    assert torch.equal(result.centroids[0], (expected.centroids[0].double() * 2.0 ** -power).to(result.centroids.dtype))
    assert torch.equal(result.centroids[1], expected.centroids[1])
