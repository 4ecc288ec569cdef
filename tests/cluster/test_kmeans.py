"""pyclr.cluster.kmeans: quality against scikit-learn, planted clusters, per-image batching,
degenerate inputs and errors (SPEC.md section 3)."""
import importlib
import sys

import numpy as np
import pytest
import torch

from pyclr import _ops
from pyclr.cluster import ClusterResult, _lloyd, kmeans, pixel_features, raw_pixel_kmeans, reference

KMEANS_MODULE = importlib.import_module("pyclr.cluster.kmeans")  # the attribute is the function

HAS_KERNEL = _ops.has_kernel("kmeans_step", "cpu")
TORCH_BACKENDS = [pytest.param("pyclr", marks=pytest.mark.skipif(not HAS_KERNEL, reason="not built")),
                  "torch"]


def blobs(n, centers, c, spread, seed, dtype=torch.float32):
    """n points around `centers` random centres; returns points and true labels."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(centers, c, generator=gen, dtype=torch.float64) * 4
    truth = torch.randint(0, centers, (n,), generator=gen)
    x = means[truth] + spread * torch.randn(n, c, generator=gen, dtype=torch.float64)
    return x.to(dtype), truth


def is_relabelling(labels, truth):
    """Whether labels equal truth up to a permutation of the label values."""
    pairs = torch.unique(torch.stack([truth.flatten(), labels.flatten()]), dim=1)
    return pairs.shape[1] == len(torch.unique(truth)) == len(torch.unique(labels))


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
@pytest.mark.parametrize("n,centers,k,c,spread,n_init,seed", [
    (2000, 5, 5, 8, 2.5, 10, 0),   # overlapping blobs
    (2000, 8, 6, 32, 3.0, 4, 1),   # fewer clusters than blobs
    (1200, 4, 9, 3, 1.5, 4, 2),    # more clusters than blobs
])
def test_inertia_within_one_percent_of_sklearn(backend, n, centers, k, c, spread, n_init, seed):
    KMeans = pytest.importorskip("sklearn.cluster").KMeans
    x, _ = blobs(n, centers, c, spread, seed)
    ours = kmeans(x, k, n_init=n_init, backend=backend, seed=seed)
    theirs = KMeans(n_clusters=k, n_init=n_init, init="k-means++", random_state=seed).fit(x.numpy())
    assert float(ours.inertia) <= 1.01 * theirs.inertia_
    # the reported inertia is that of the returned labels and centroids
    exact = (x.double() - ours.centroids.double()[ours.labels]).square().sum()
    assert float(ours.inertia) == pytest.approx(float(exact), rel=1e-4)


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_planted_clusters_are_recovered(backend, dtype):
    x, truth = blobs(1200, 6, 16, 0.3, seed=3, dtype=dtype)
    result = kmeans(x, 6, n_init=3, backend=backend, seed=3)
    assert is_relabelling(result.labels, truth)
    assert result.centroids.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert result.labels.dtype == torch.int64 and result.labels.shape == (1200,)


def test_float64_points_give_float64_results_on_every_device(device):
    """The CUDA kernel computes in float32; the results keep the float64 contract."""
    x, truth = blobs(300, 3, 8, 0.3, seed=5, dtype=torch.float64)
    result = kmeans(x.to(device), 3, n_init=1, backend="pyclr", seed=0)
    assert result.centroids.dtype == torch.float64 and result.inertia.dtype == torch.float64
    assert is_relabelling(result.labels.cpu(), truth)


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
def test_per_image_batch_equals_a_loop_over_images(backend):
    gen = torch.Generator().manual_seed(4)
    features = pixel_features(torch.randn(5, 24, 9, 11, generator=gen))
    batched = kmeans(features, 4, n_init=3, backend=backend, seed=10)
    assert batched.labels.shape == (5, 9, 11) and batched.centroids.shape == (5, 4, 24)
    assert batched.inertia.shape == (5,) and batched.n_iter.shape == (5,)
    for b in range(5):
        alone = kmeans(features[b:b + 1], 4, n_init=3, backend=backend, seed=10 + b)
        assert torch.equal(batched.labels[b], alone.labels[0])
        assert torch.equal(batched.centroids[b], alone.centroids[0])
        assert torch.equal(batched.inertia[b], alone.inertia[0])
        assert int(batched.n_iter[b]) == int(alone.n_iter[0])


@pytest.mark.skipif(not (torch.cuda.is_available() and _ops.has_kernel("kmeans_step", "cuda")),
                    reason="no GPU or no CUDA kernels")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_and_cuda_agree(dtype):
    x, truth = blobs(4 * 400, 5, 64, 0.3, seed=12, dtype=dtype)
    x = x.reshape(4, 20, 20, 64)
    cpu = kmeans(x, 5, n_init=3, seed=1)
    gpu = kmeans(x.cuda(), 5, n_init=3, seed=1)
    assert gpu.labels.is_cuda and gpu.centroids.is_cuda
    for b in range(4):  # the same partition (the seeding's rounding may permute the labels)
        assert is_relabelling(gpu.labels[b].cpu(), cpu.labels[b])
    assert torch.allclose(cpu.inertia, gpu.inertia.cpu(), rtol=1e-4)


def test_per_image_differs_from_cross_image():
    features = pixel_features(torch.randn(3, 16, 6, 6, generator=torch.Generator().manual_seed(5)))
    cross = kmeans(features, 3, mode="cross_image")
    assert cross.labels.shape == (3, 6, 6) and cross.centroids.shape == (3, 16)
    assert cross.inertia.dim() == 0 and cross.n_iter.dim() == 0
    flat = kmeans(features.reshape(-1, 16), 3)
    assert torch.equal(cross.labels.flatten(), flat.labels)


def test_same_seed_same_result_and_seeds_differ():
    x, _ = blobs(800, 5, 8, 3.0, seed=6)
    a, b = kmeans(x, 7, n_init=1, seed=1), kmeans(x, 7, n_init=1, seed=1)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.centroids, b.centroids)
    seeds = [_lloyd.initial_centroids(x[None], 7, "k-means++", _lloyd.problem_generators(s, 1))
             for s in (1, 2)]
    assert not torch.equal(*seeds)


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_constant_features_give_one_occupied_cluster(backend, k):
    x = torch.full((2, 4, 5, 7), 0.25)
    result = kmeans(x, k, n_init=2, backend=backend)
    assert int(result.labels.max()) == 0
    assert torch.isfinite(result.centroids).all() and torch.isfinite(result.inertia).all()
    assert float(result.inertia.abs().max()) == 0.0
    assert torch.allclose(result.centroids, torch.full_like(result.centroids, 0.25))


def test_empty_clusters_are_reseeded_with_the_farthest_points():
    x = torch.tensor([[[0.0], [1.0], [10.0], [11.0], [30.0]]])
    centroids = torch.tensor([[[0.5], [100.0], [200.0]]])  # the last two attract nobody
    labels, distances, sums, counts = torch.ops.pyclr.kmeans_step(x, centroids) if HAS_KERNEL \
        else reference.kmeans_step(x, centroids)
    assert counts.tolist() == [[5, 0, 0]]
    new = _lloyd.updated_centroids(x, centroids, sums, counts, distances)
    assert new.flatten().tolist() == pytest.approx([52 / 5, 30.0, 11.0])  # farthest: 30, then 11
    result = _lloyd.lloyd(x, centroids, reference.kmeans_step, 50, torch.zeros(1))
    assert torch.isfinite(result.centroids).all()
    assert sorted(result.centroids.flatten().tolist()) == pytest.approx([0.5, 10.5, 30.0])


def plain_lloyd(x, centroids, step, max_iter, tol):
    """Lloyd's loop written plainly: every iteration takes the reseeding path and stops on the
    same rules, then one more step gives the labels and inertia of the final centroids."""
    active = torch.ones(x.shape[0], dtype=torch.bool)
    n_iter = torch.zeros(x.shape[0], dtype=torch.int64)
    previous = None
    for _ in range(max_iter):
        labels, distances, sums, counts = step(x, centroids)
        new = _lloyd.updated_centroids(x, centroids, sums, counts, distances)
        converged = (new - centroids).square().sum((1, 2)) <= tol
        if previous is not None:
            converged |= (labels == previous).all(1)
        centroids = torch.where(active[:, None, None], new, centroids)
        n_iter += active
        active &= ~converged
        previous = labels
        if not active.any():
            break
    labels, distances, _, _ = step(x, centroids)
    return centroids, labels, distances.sum(1), n_iter


def step_for(backend):
    return torch.ops.pyclr.kmeans_step if backend == "pyclr" else reference.kmeans_step


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
def test_a_cluster_emptied_by_an_update_is_reseeded(backend):
    """lloyd skips the reseeding ops while no cluster is empty, reading that from the step it
    ran last: a cluster that empties after an update (here cluster 2 at the second step) must
    still be reseeded, exactly as when every iteration reseeds."""
    step = step_for(backend)
    x = torch.tensor([12.0, 3.0, 17.0, 2.0, 13.0, 5.0]).view(1, 6, 1)
    centroids = torch.tensor([0.0, 18.0, 8.0]).view(1, 3, 1)
    _, distances, sums, counts = step(x, centroids)
    assert counts.tolist() == [[2, 2, 2]]
    assert step(x, _lloyd.updated_centroids(x, centroids, sums, counts, distances))[3].tolist() == [[3, 3, 0]]
    result = _lloyd.lloyd(x, centroids, step, 50, torch.zeros(1))
    expected = plain_lloyd(x, centroids, step, 50, torch.zeros(1))
    for got, want in zip((result.centroids, result.labels, result.inertia, result.n_iter), expected):
        assert torch.equal(got, want)
    assert len(result.labels.unique()) == 3


@pytest.mark.parametrize("backend", TORCH_BACKENDS)
def test_lloyd_equals_the_plain_loop(backend):
    """Bit for bit, on problems with and without empty clusters, early and late stops."""
    step, gen = step_for(backend), torch.Generator().manual_seed(3)
    for trial in range(40):
        b, n, c = 1 + trial % 4, 5 + 7 * trial, 1 + trial % 6
        k = 1 + trial % min(n, 9)
        x = torch.randn(b, n, c, generator=gen, dtype=torch.float64 if trial % 5 == 0 else torch.float32)
        if trial % 3 == 0:
            x[:, : n // 2] = 0.25  # repeated points
        centroids = torch.randn(b, k, c, generator=gen, dtype=x.dtype) * (6.0 if trial % 2 else 1.0)
        tol = torch.rand(b, generator=gen, dtype=x.dtype) * (1e-2 if trial % 4 else 0.0)
        max_iter = trial % 13
        result = _lloyd.lloyd(x, centroids, step, max_iter, tol)
        expected = plain_lloyd(x, centroids, step, max_iter, tol)
        for got, want in zip((result.centroids, result.labels, result.inertia, result.n_iter), expected):
            assert torch.equal(got, want), trial


def test_tolerance_and_max_iter():
    x, _ = blobs(3000, 6, 8, 3.0, seed=7)
    one = kmeans(x, 6, n_init=1, max_iter=1)
    assert int(one.n_iter) == 1
    loose = kmeans(x, 6, n_init=1, tol=1.0)
    strict = kmeans(x, 6, n_init=1, tol=0.0)
    assert int(loose.n_iter) < int(strict.n_iter) < 300
    assert float(strict.inertia) <= float(loose.inertia) * (1 + 1e-6)


def test_random_init():
    x, truth = blobs(600, 3, 4, 0.2, seed=8)
    result = kmeans(x, 3, init="random", n_init=5)
    assert is_relabelling(result.labels, truth)


def test_auto_backend_uses_the_kernel(monkeypatch):
    if not HAS_KERNEL:
        pytest.skip("not built")
    calls = []
    step = torch.ops.pyclr.kmeans_step
    monkeypatch.setattr(KMEANS_MODULE, "_kernel_step", lambda x, c: calls.append(1) or step(x, c))
    kmeans(torch.randn(100, 3), 2, n_init=1)
    assert calls


def test_sklearn_backend():
    pytest.importorskip("sklearn")
    x, truth = blobs(900, 3, 5, 0.3, seed=9)
    result = kmeans(x.reshape(3, 15, 20, 5), 3, mode="cross_image", backend="sklearn")
    assert is_relabelling(result.labels.flatten(), truth)
    per_image = kmeans(x.reshape(3, 15, 20, 5), 2, backend="sklearn", seed=1)
    assert per_image.centroids.shape == (3, 2, 5) and per_image.n_iter.shape == (3,)


@pytest.mark.parametrize("backend", ["pyclr", "torch"])
@pytest.mark.parametrize("offset", [1e3, 1e4])
def test_points_far_from_the_origin(backend, offset):
    # |x|^2 - 2 x.c + |c|^2 in float32 lost eps |x|^2 per distance: four blobs of spread 0.05
    # at 1e3 reported an inertia 8x the true one, and at 1e4 the labels were noise. The points
    # are centred first, as scikit-learn does.
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    truth = torch.arange(4).repeat_interleave(50)
    x = centres[truth] + 0.05 * torch.randn(200, 2, generator=gen) + offset
    result = kmeans(x, 4, n_init=3, backend=backend)
    exact = (x.double() - result.centroids.double()[result.labels]).square().sum()
    assert float(result.inertia) == pytest.approx(float(exact), rel=1e-3)
    pairs = set(zip(truth.tolist(), result.labels.tolist()))
    assert len(pairs) == 4 and len({label for _, label in pairs}) == 4  # the blobs, up to renaming


# x 2**-power: float32's squared distances of points at 2**-90 (1e-27) underflowed, and all
# points went to one cluster (float64's at 2**-600); a bfloat16 image at 2**-90 as well
TINY_CASES = [(torch.float32, 90), (torch.bfloat16, 90), (torch.float64, 600)]


def tiny_and_ordinary(dtype, power):
    """Two images of four blobs: the first scaled by 2**-power, the second as drawn."""
    gen = torch.Generator().manual_seed(3)
    centres = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    x = (centres[torch.arange(4).repeat(16)] + 0.1 * torch.randn(64, 3, generator=gen)).to(dtype)
    x = x.double().reshape(1, 8, 8, 3).expand(2, -1, -1, -1)
    scaled = torch.stack([x[0] * 2.0 ** -power, x[1]]).to(dtype)  # exact: a power of two
    return x.to(dtype), scaled


@pytest.mark.parametrize("dtype,power", TINY_CASES)
@pytest.mark.parametrize("backend", ["pyclr", "torch", "sklearn"])
def test_tiny_features_are_clustered_as_their_scaled_up_copies(backend, dtype, power):
    if backend == "sklearn":
        pytest.importorskip("sklearn")
    x, scaled = tiny_and_ordinary(dtype, power)
    result, expected = kmeans(scaled, 4, n_init=2, backend=backend), kmeans(x, 4, n_init=2, backend=backend)
    assert torch.equal(result.labels, expected.labels)  # image 0: the same, image 1 untouched
    assert len(result.labels[0].unique()) == 4
    assert torch.equal(result.centroids[0], (expected.centroids[0].double() * 2.0 ** -power).to(result.centroids.dtype))
    assert torch.equal(result.centroids[1], expected.centroids[1])
    assert torch.equal(result.inertia[1], expected.inertia[1])
    # (2**-180 and 2**-1200 times the inertia: 0 in float32 and float64 alike, rounded as they should)
    assert torch.equal(result.inertia[0], (expected.inertia[0].double() * 2.0 ** (-2 * power)).to(result.inertia.dtype))


def test_faiss_seed_stays_in_its_range():
    # image b seeds faiss with seed + b: past 2**31 - 1 faiss raised an OverflowError
    pytest.importorskip("faiss")
    result = kmeans(torch.rand(2, 4, 4, 2, generator=torch.Generator().manual_seed(0)), 2, backend="faiss",
                    seed=2 ** 31 - 1)
    assert result.labels.shape == (2, 4, 4)


def test_faiss_backend_uses_every_point():
    pytest.importorskip("faiss")
    KMeans = pytest.importorskip("sklearn.cluster").KMeans
    # 4000 points for k = 3: faiss's default would train on a sample of 768 of them.
    x, _ = blobs(4000, 3, 6, 3.0, seed=11)
    result = kmeans(x, 3, n_init=3, max_iter=100, backend="faiss", seed=2)
    theirs = KMeans(n_clusters=3, n_init=3, random_state=2).fit(x.numpy())
    assert float(result.inertia) <= 1.01 * theirs.inertia_
    # converged on all points: each centroid is the mean of all of its points
    means = torch.stack([x[result.labels == j].mean(0) for j in range(3)])
    assert torch.allclose(result.centroids, means, atol=1e-4)


@pytest.mark.parametrize("module,backend,hint", [("sklearn", "sklearn", "pip install scikit-learn"),
                                                 ("faiss", "faiss", "pip install faiss-cpu")])
def test_missing_library_says_how_to_install(monkeypatch, module, backend, hint):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    monkeypatch.setitem(sys.modules, module + ".cluster", None)
    with pytest.raises(ImportError, match=hint):
        kmeans(torch.randn(50, 3), 2, backend=backend)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(k=0), ValueError, "k: expected an int with 1 <= k <= 20"),
    (dict(k=21), ValueError, "k: expected an int with 1 <= k <= 20"),
    (dict(k=2.0), TypeError, "k: expected an int"),
    (dict(mode="per_pixel"), ValueError, "mode: expected one of"),
    (dict(backend="cuml"), ValueError, "backend: expected one of"),
    (dict(init="kmeans++"), ValueError, "init: expected one of"),
    (dict(n_init=0), ValueError, "n_init: expected an int >= 1"),
    (dict(max_iter=0), ValueError, "max_iter: expected an int >= 1"),
    (dict(tol=-1e-3), ValueError, "tol: expected a finite number >= 0"),
    (dict(tol=float("nan")), ValueError, "tol: expected a finite number >= 0"),
    (dict(seed=-1), ValueError, "seed: expected an int in 0..2\\*\\*31-1"),
    (dict(seed=2 ** 64), ValueError, "seed: expected an int in 0..2\\*\\*31-1"),  # was torch's overflow
    # scikit-learn takes an array of centroids for init: here it was numpy's "truth value of
    # an array is ambiguous"
    (dict(init=np.zeros((2, 3))), ValueError, "init: expected one of 'k-means\\+\\+', 'random', got ndarray"),
    (dict(mode=["per_image"]), ValueError, "mode: expected one of 'per_image', 'cross_image', got list"),
])
def test_bad_options(kwargs, error, message):
    args = dict(x=torch.randn(20, 3), k=2)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        kmeans(**args)


@pytest.mark.parametrize("x,error,message", [
    (torch.randn(4, 5, 3), ValueError, r"x: expected a \(B, H, W, C\) or \(n, C\) tensor, got Tensor of shape \(4, 5, 3\)"),
    (torch.randn(7), ValueError, "x: expected a"),
    ([[0.0, 1.0]], ValueError, "x: expected a .* got list"),
    (torch.ones(5, 2, dtype=torch.int64), TypeError, "x: expected dtype float32"),
    (torch.randn(0, 3), ValueError, "x: expected at least one point"),
])
def test_bad_points(x, error, message):
    with pytest.raises(error, match=message):
        kmeans(x, 1)


def test_numpy_scalars_are_integers_and_numbers():
    # np.int64(2) was refused as "k: expected an integer ..., got np.int64(2)"
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    ours = kmeans(x, np.int64(3), n_init=np.int32(2), max_iter=np.int64(50), tol=np.float32(1e-4), seed=np.int64(1),
                  backend="torch")
    plain = kmeans(x, 3, n_init=2, max_iter=50, tol=float(np.float32(1e-4)), seed=1, backend="torch")
    assert torch.equal(ours.labels, plain.labels) and torch.equal(ours.centroids, plain.centroids)


@pytest.mark.parametrize("backend", ["pyclr", "torch", "faiss", "sklearn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_whose_squared_distances_overflow_float32_are_rejected(backend, dtype):
    # 1e19 is finite in float32, its square is not: faiss aborted the process on such input,
    # the other backends returned inf or NaN inertia
    x = torch.randn(10, 3, generator=torch.Generator().manual_seed(0)).to(dtype) * 1e19
    with pytest.raises(ValueError, match="x: values up to .* overflow float32 squared distances for 10 points of "
                                         "3 channels"):
        kmeans(x, 3, backend=backend)
    kmeans(x * 1e-3, 3, backend="torch")  # under the limit: clusters


def test_float16_points_whose_dot_products_overflow_float16_are_clustered_in_float32():
    # k-means++ seeding computes dot products in x's dtype: for C max|x|^2 above 65504 they
    # overflowed to inf in float16 and the seeds differed from those of the same values in float32
    from pyclr.cluster.kmeans import _check_values

    x = (torch.randn(1, 50, 3, generator=torch.Generator().manual_seed(1)) * 300).half()
    promoted, scale = _check_values(x)
    assert scale is None
    assert promoted.dtype == torch.float32 and torch.equal(promoted, x.float())
    differs = []
    for seed in range(3):
        seeds = [_lloyd.initial_centroids(points, 3, "k-means++", _lloyd.problem_generators(seed, 1))
                 for points in (promoted, x.float(), x)]
        assert torch.equal(seeds[0], seeds[1])
        differs.append(not torch.equal(seeds[2].float(), seeds[0]))  # float16 seeding: inf distances
    assert any(differs)  # the overflow this guards against is real for these points
    small = (torch.randn(1, 50, 3) * 10).half()  # products well inside float16: kept as given
    assert _check_values(small)[0].dtype == torch.float16


@pytest.mark.parametrize("backend", ["pyclr", "torch"])
def test_float16_points_whose_centred_dot_products_overflow_are_clustered_in_float32(backend):
    # max|x| = 111 in 4 channels: C max|x|^2 = 5e4 fits float16, but the centred points reach
    # twice that and their seeding dot products overflowed: two far groups merged (inertia 27353
    # against 105 for the same points in float32). The spread bounds the centred values.
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([110 + 0.5 * torch.randn(40, 4, generator=gen),
                   torch.tensor([-110.0] * 4) + torch.randn(10, 4, generator=gen),
                   torch.tensor([-110.0, -110, -110, -110 / 3]) + torch.randn(10, 4, generator=gen)]).half()
    result, as_float = kmeans(x, 3, backend=backend), kmeans(x.float(), 3, backend=backend)
    assert torch.equal(result.labels, as_float.labels) and torch.equal(result.inertia, as_float.inertia)
    assert float(result.inertia) < 200


@pytest.mark.parametrize("backend", ["pyclr", "torch", "sklearn", "faiss"])
def test_float16_points_far_from_the_origin(backend):
    # four blobs at 200 + 4 e_i: their spread keeps them float16 (centred, products are small),
    # but faiss seeded the uncentred points, whose float16 products overflowed: every seed on one
    # blob, inertia 418 against 9.0 in float32. Every backend now seeds centred points.
    pytest.importorskip({"sklearn": "sklearn", "faiss": "faiss"}.get(backend, "torch"))
    gen = torch.Generator().manual_seed(0)
    x = 200 + 4 * torch.eye(4).repeat_interleave(50, 0) + 0.1 * torch.randn(200, 4, generator=gen)
    options = dict(n_init=1, max_iter=2, backend=backend)  # the seeds decide
    half, single = kmeans(x.half(), 4, **options), kmeans(x.half().float(), 4, **options)
    assert float(half.inertia) == pytest.approx(float(single.inertia), rel=1e-2)
    assert len(set(zip(torch.arange(4).repeat_interleave(50).tolist(), half.labels.tolist()))) == 4


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_non_finite_features_are_rejected(bad, dtype):
    x = torch.randn(2, 3, 3, 4).to(dtype)
    x[1, 2, 0, 3] = bad
    with pytest.raises(ValueError, match="x: contains NaN or infinite values"):
        kmeans(x, 2)


def test_k_is_checked_per_image():
    x = torch.randn(2, 3, 3, 4)
    with pytest.raises(ValueError, match="1 <= k <= 9"):
        kmeans(x, 10)
    assert kmeans(x, 10, mode="cross_image", n_init=1).centroids.shape == (10, 4)


def test_pixel_features():
    fmap = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    features = pixel_features(fmap)
    assert features.shape == (2, 3, 4, 5) and features.is_contiguous()
    assert torch.allclose(features.norm(dim=-1), torch.ones(2, 3, 4, dtype=torch.float64))
    assert torch.allclose(features[1, 2, 3], fmap[1, :, 2, 3] / fmap[1, :, 2, 3].norm())
    assert pixel_features(fmap.bfloat16()).dtype == torch.bfloat16
    assert torch.equal(pixel_features(torch.zeros(1, 3, 2, 2)), torch.zeros(1, 2, 2, 3))
    # a pixel whose norm overflows float32 keeps its direction (it became zeros)
    huge = pixel_features(fmap.float() * 1e30)
    assert torch.allclose(huge, features.float(), atol=1e-6)
    with pytest.raises(ValueError, match=r"feature_map: expected a \(B, C, H, W\) tensor"):
        pixel_features(torch.randn(5, 3, 4))


def two_colour_image():
    image = torch.zeros(3, 56, 40, dtype=torch.uint8)
    image[0, :, :20] = 200  # red left half
    image[2, :, 20:] = 180  # blue right half
    return image


def test_raw_pixel_kmeans():
    image = two_colour_image()
    result = raw_pixel_kmeans(image, (14, 10), 2)
    assert isinstance(result, ClusterResult)
    assert result.labels.shape == (14, 10) and result.centroids.shape == (2, 3)
    assert (result.labels[:, :5] == result.labels[0, 0]).all()
    assert (result.labels[:, 5:] != result.labels[0, 0]).all()
    assert float(result.inertia) == pytest.approx(0.0, abs=1e-4)  # fp32 rounding of the expansion
    colours = sorted(result.centroids.tolist())
    assert colours == [pytest.approx([0, 0, 180 / 255], abs=1e-6), pytest.approx([200 / 255, 0, 0], abs=1e-6)]
    # channels last and float give the same result
    last = raw_pixel_kmeans(image.permute(1, 2, 0).float() / 255, 14, 2)
    assert last.labels.shape == (14, 14)


def test_raw_pixel_kmeans_has_no_mode():
    with pytest.raises(ValueError, match="mode: raw_pixel_kmeans clusters one image"):
        raw_pixel_kmeans(torch.rand(3, 16, 16), 4, 3, mode="cross_image")  # was an IndexError


@pytest.mark.parametrize("image,size,message", [
    (torch.zeros(4, 8, 8), 4, r"image: expected a \(3, H, W\) or \(H, W, 3\) tensor"),
    (torch.zeros(3, 8, 8, dtype=torch.int32), 4, "image: expected uint8 or floating point"),
    (torch.zeros(3, 8, 8), (4, 0), "size: expected sizes >= 1"),
    (torch.zeros(3, 8, 8), 16, "size: expected at most the image's"),
])
def test_raw_pixel_kmeans_bad_inputs(image, size, message):
    with pytest.raises((ValueError, TypeError), match=message):
        raw_pixel_kmeans(image, size, 2)


def test_pixel_features_need_channels():
    # zero channels failed inside the norm: "cannot compute the inf norm on the dimension 1"
    with pytest.raises(ValueError, match=r"feature_map: expected a \(B, C, H, W\) tensor with C >= 1, got"):
        pixel_features(torch.randn(2, 0, 4, 4))


def test_kmeans_plusplus_keeps_the_best_of_its_candidates():
    # keeping the worst D^2-sampled candidate (argmax for argmin) passed every test through
    # Lloyd's iterations and n_init, which repair a poor start on easy blobs. Points 0, 1, 10,
    # 11, 100; first centre 0; the uniforms draw candidates 10 and 100 (cumulative D^2: 0, 1,
    # 101, 222, 10222): 100 leaves a potential of 222, 10 one of 8102
    x = torch.tensor([[[0.0], [1.0], [10.0], [11.0], [100.0]]])
    uniforms = torch.tensor([[0.0, 50 / 10222, 5000 / 10222]], dtype=torch.float64)
    assert _lloyd.local_trials(2) == 2
    assert torch.equal(_lloyd.kmeans_plusplus(x, 2, uniforms), torch.tensor([[[0.0], [100.0]]]))
    swapped = uniforms[:, [0, 2, 1]]  # the candidates' order does not matter
    assert torch.equal(_lloyd.kmeans_plusplus(x, 2, swapped), torch.tensor([[[0.0], [100.0]]]))
