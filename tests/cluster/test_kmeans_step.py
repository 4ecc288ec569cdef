"""The fused kmeans_step kernels against the float64 plain-PyTorch specification."""
import pytest
import torch

from pyclr import _ops
from pyclr.cluster import reference


pytestmark = pytest.mark.skipif(not _ops.has_kernel("kmeans_step", "cpu"),
                                reason="pyclr's kmeans_step was not built")

ACC = {torch.float64: torch.float64, torch.float32: torch.float32, torch.bfloat16: torch.float32,
       torch.float16: torch.float32}


def cuda_kernel_ready() -> bool:
    return torch.cuda.is_available() and _ops.has_kernel("kmeans_step", "cuda")


def problem(batch, n, k, c, dtype, device, seed):
    """Points and centroids (k of the points, shifted) with a non-zero mean: the kernels must
    not rely on centred data."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(batch, n, c, generator=gen, dtype=torch.float64) + 0.5).to(dtype)
    pick = torch.randint(0, n, (batch, k), generator=gen)
    centroids = x.to(torch.float64).gather(1, pick[..., None].expand(-1, -1, c))
    centroids = centroids + 0.1 * torch.randn(batch, k, c, generator=gen, dtype=torch.float64)
    return x.to(device), centroids.to(device, ACC[dtype])


def exact_distances(x, centroids):
    """(B, n, k) squared distances by direct differences in float64."""
    return (x.double()[:, :, None, :] - centroids.double()[:, None, :, :]).square().sum(-1)


def check_step(x, centroids):
    labels, distances, sums, counts = torch.ops.pyclr.kmeans_step(x, centroids)
    acc = ACC[x.dtype]
    batch, n, c = x.shape
    k = centroids.shape[1]
    assert labels.dtype == torch.int64 and labels.shape == (batch, n)
    assert distances.dtype == acc and distances.shape == (batch, n)
    assert sums.dtype == acc and sums.shape == (batch, k, c)
    assert counts.dtype == torch.int64 and counts.shape == (batch, k)
    labels, distances, sums, counts = (t.cpu() for t in (labels, distances, sums, counts))
    x, centroids = x.cpu().double(), centroids.cpu().double()

    d = exact_distances(x, centroids)
    scale = x.square().sum(-1, keepdim=True) + centroids.square().sum(-1)[:, None, :]
    eps = 1e-12 if acc == torch.float64 else 1e-5
    # A point whose two nearest centroids are closer than the rounding of the expansion may
    # take either; every other point must take the exact argmin.
    top2 = d.topk(min(2, k), dim=-1, largest=False).values
    gap = (top2[..., -1] - top2[..., 0]) if k > 1 else torch.full_like(top2[..., 0], float("inf"))
    clear = gap > 8 * eps * scale.amax(-1)
    assert torch.equal(labels[clear], d.argmin(-1)[clear])
    # Whatever the label, it is (nearly) a nearest centroid and its distance is right.
    chosen = d.gather(-1, labels[..., None]).squeeze(-1)
    assert (chosen - top2[..., 0] <= 8 * eps * scale.amax(-1)).all()
    assert torch.allclose(distances.double(), chosen, rtol=0, atol=8 * eps * scale.amax().item())
    # Sums and counts are those of the kernel's own labels.
    exact_sums = torch.zeros(batch, k, c, dtype=torch.float64).scatter_add_(
        1, labels[..., None].expand_as(x), x)
    exact_counts = torch.zeros(batch, k, dtype=torch.int64).scatter_add_(1, labels, torch.ones_like(labels))
    assert torch.equal(counts, exact_counts)
    # each entry within a rounding bound of its own terms: sum over its points of |x| (a bound
    # on the whole problem's |x| let a point left out of a wide problem's sum pass)
    magnitude = torch.zeros(batch, k, c, dtype=torch.float64).scatter_add_(
        1, labels[..., None].expand_as(x), x.abs())
    sum_tol = (1e-12 if acc == torch.float64 else 1e-4) * magnitude
    assert ((sums.double() - exact_sums).abs() <= sum_tol).all()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("n", [1, 7, 2500])
@pytest.mark.parametrize("k", [1, 3, 17])
@pytest.mark.parametrize("c", [1, 3, 64, 130])
def test_matches_exact_shapes(device, batch, n, k, c):
    x, centroids = problem(batch, n, k, c, torch.float32, device, seed=batch * 7 + n + k * 11 + c)
    check_step(x, centroids)


@pytest.mark.parametrize("batch,n,k,c", [
    (1, 5000, 8, 2048),  # CUDA: the one-pass kernel at its widest (64 channels per lane)
    (2, 300, 3, 2100),   # CUDA: too wide for one pass, the two-pass kernel
    (1, 400, 40, 1500),  # CUDA: centroids beyond shared memory, the two-pass kernel
])
def test_matches_exact_wide(device, batch, n, k, c):
    x, centroids = problem(batch, n, k, c, torch.float32, device, seed=n + k + c)
    check_step(x, centroids)


@pytest.mark.parametrize("optin", ["101376", "166912"])  # sm_86/89's 99 KB, an A100's 163 KB
def test_one_pass_kernel_fits_the_devices_shared_memory(device, monkeypatch, optin):
    # the one-pass kernel took up to 200 KB of shared memory whatever the device allowed: at
    # k = 8, C = 2048 (128 KB) the launch failed on a 99 KB device. The limit is the device's
    # now (the CPU emulator stands in for such a device through PYCLR_EMU_SHARED_OPTIN).
    monkeypatch.setenv("PYCLR_EMU_SHARED_OPTIN", optin)
    x, centroids = problem(1, 700, 11, 2048, torch.float32, device, seed=4)
    check_step(x, centroids)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n,k,c", [(9, 3, 5), (1500, 17, 64), (3000, 8, 130)])
def test_matches_exact_dtypes(device, dtype, n, k, c):
    if dtype == torch.float64 and device.type == "cuda":
        pytest.skip("the CUDA kernel takes 32- and 16-bit floats only")
    x, centroids = problem(2, n, k, c, dtype, device, seed=n + k + c)
    check_step(x, centroids)


def test_matches_reference_module():
    x, centroids = problem(2, 500, 5, 12, torch.float64, "cpu", seed=1)
    for fused, ref in zip(torch.ops.pyclr.kmeans_step(x, centroids), reference.kmeans_step(x, centroids)):
        assert fused.dtype == ref.dtype
        assert torch.allclose(fused.double(), ref.double(), rtol=1e-12, atol=1e-10)


def test_ties_go_to_the_lowest_index(device):
    x, centroids = problem(2, 300, 4, 6, torch.float32, device, seed=2)
    duplicated = torch.cat([centroids, centroids], 1)  # j and j + 4 are the same centroid
    labels, _, sums, counts = torch.ops.pyclr.kmeans_step(x, duplicated)
    assert int(labels.max()) < 4
    assert int(counts[:, 4:].sum()) == 0 and float(sums[:, 4:].abs().sum()) == 0
    same = centroids[:, :1].expand(-1, 5, -1).contiguous()
    assert int(torch.ops.pyclr.kmeans_step(x, same)[0].max()) == 0


def test_cpu_kernel_is_deterministic_and_batch_independent():
    x, centroids = problem(3, 5000, 6, 40, torch.float32, "cpu", seed=3)
    first = torch.ops.pyclr.kmeans_step(x, centroids)
    again = torch.ops.pyclr.kmeans_step(x, centroids)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    for b in range(3):
        alone = torch.ops.pyclr.kmeans_step(x[b:b + 1], centroids[b:b + 1])
        for batched, single in zip(first, alone):
            assert torch.equal(batched[b], single[0])


def test_non_contiguous_points(device):
    x, centroids = problem(2, 400, 3, 10, torch.float32, device, seed=4)
    strided = x.transpose(1, 2).contiguous().transpose(1, 2)
    assert not strided.is_contiguous()
    labels_s, distances_s, sums_s, counts_s = torch.ops.pyclr.kmeans_step(strided, centroids)
    labels, distances, sums, counts = torch.ops.pyclr.kmeans_step(x, centroids)
    for a, b in ((labels_s, labels), (distances_s, distances), (counts_s, counts)):
        assert torch.equal(a, b)
    if device.type == "cpu":
        assert torch.equal(sums_s, sums)
    else:  # CUDA adds the tiles' partial sums with float atomics, in any order
        torch.testing.assert_close(sums_s, sums, rtol=1e-6, atol=1e-5)


@pytest.mark.skipif(not cuda_kernel_ready(), reason="no GPU or no CUDA kernels")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("batch,n,k,c", [(1, 5000, 8, 2048), (4, 3136, 8, 256), (3, 777, 70, 130)])
def test_cpu_and_cuda_agree(dtype, batch, n, k, c):
    x, centroids = problem(batch, n, k, c, dtype, "cpu", seed=5)
    cpu = torch.ops.pyclr.kmeans_step(x, centroids)
    gpu = [t.cpu() for t in torch.ops.pyclr.kmeans_step(x.cuda(), centroids.cuda())]
    d = exact_distances(x, centroids)
    top2 = d.topk(2, dim=-1, largest=False).values
    clear = top2[..., 1] - top2[..., 0] > 1e-3 * (1 + top2[..., 0])
    assert torch.equal(cpu[0][clear], gpu[0][clear])
    assert torch.allclose(cpu[1], gpu[1], rtol=1e-4, atol=1e-3)
    if bool(clear.all()):
        assert torch.equal(cpu[3], gpu[3])
        assert torch.allclose(cpu[2], gpu[2], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("x_shape,c_shape,c_dtype,message", [
    ((5, 3), (1, 2, 3), torch.float32, "x: expected a 3-D tensor"),
    ((1, 0, 3), (1, 2, 3), torch.float32, "x: expected B, n and C >= 1"),
    ((1, 5, 3), (2, 5, 3), torch.float32, "centroids: expected shape"),
    ((1, 5, 3), (1, 2, 4), torch.float32, "centroids: expected shape"),
    ((1, 5, 3), (1, 0, 3), torch.float32, "centroids: expected k >= 1"),
    ((1, 5, 3), (2, 3), torch.float32, "centroids: expected a 3-D tensor"),
    ((1, 5, 3), (1, 2, 3), torch.float64, "centroids: expected dtype Float"),
])
def test_bad_inputs(x_shape, c_shape, c_dtype, message):
    with pytest.raises(RuntimeError, match=message):
        torch.ops.pyclr.kmeans_step(torch.randn(x_shape), torch.randn(c_shape, dtype=c_dtype))


def test_bad_dtype():
    with pytest.raises(RuntimeError, match="x: expected dtype float32"):
        torch.ops.pyclr.kmeans_step(torch.ones(1, 4, 2, dtype=torch.int64), torch.randn(1, 2, 2))


@pytest.mark.not_emulated("opcheck and torch.compile of torch.ops.pyclr itself")
def test_opcheck():
    import pyclr.cluster  # noqa: F401  (registers the fake kernel)

    x, centroids = problem(2, 100, 5, 9, torch.bfloat16, "cpu", seed=6)  # acc dtype != x's
    torch.library.opcheck(torch.ops.pyclr.kmeans_step, (x, centroids))
    x, centroids = problem(2, 100, 5, 9, torch.float64, "cpu", seed=6)
    torch.library.opcheck(torch.ops.pyclr.kmeans_step, (x, centroids), test_utils="test_faketensor")
    # points that require grad: the step's outputs did too (no autograd link), and opcheck's
    # aot_dispatch test failed casting a gradient to the int64 labels
    x.requires_grad_()
    torch.library.opcheck(torch.ops.pyclr.kmeans_step, (x, centroids))
    assert not any(out.requires_grad for out in torch.ops.pyclr.kmeans_step(x, centroids))
