"""The CPU emulator of the CUDA execution model (shim/pyclr_emu.h) on kernels written to show
its rules (selftest.cu): what it must compute and what mistakes it must catch."""
import pytest
import torch

ORDERS = ["forward", "reverse"]


@pytest.fixture(params=ORDERS)
def thread_order(request, monkeypatch):
    monkeypatch.setenv("PYCLR_EMU_THREAD_ORDER", request.param)
    return request.param


def test_barrier_orders_shared_memory(emu, thread_order):
    x = torch.arange(256, dtype=torch.int32)
    out = emu.selftest("neighbour_barrier", x)
    expected = x.view(2, 128).roll(-1, dims=1).flatten()
    assert torch.equal(out, expected)


def test_missing_barrier_reads_the_poison(emu, thread_order):
    """Without __syncthreads, the thread that runs first reads a slot nobody has written: the
    0xff fill, -1 as an int. Which thread that is depends on the order, not whether."""
    x = torch.arange(256, dtype=torch.int32)
    out = emu.selftest("neighbour", x)
    assert (out == -1).any()


@pytest.mark.parametrize("block_order", ["forward", "reverse", "shuffle"])
def test_warp_shuffle_sums(emu, thread_order, block_order, monkeypatch):
    monkeypatch.setenv("PYCLR_EMU_BLOCK_ORDER", block_order)
    x = torch.randn(384, generator=torch.Generator().manual_seed(0))
    out = emu.selftest("warp_sum", x)
    expected = x.view(-1, 32).sum(1, keepdim=True).expand(-1, 32).flatten()
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("name,match", [
    ("deadlock", "deadlock"),
    ("early_exit_shuffle", "after lanes exited"),
    ("divergent", "divergent synchronisation"),
    ("trap", r"__trap\(\) \(thread 5\)"),
    ("dynamic_shared", "more than the kernel's limit"),
    ("mma_lane_operands", "different operands to mma_sync"),
])
def test_mistakes_fail_the_launch(emu, name, match):
    x = torch.randn(64 * 1024 if name == "dynamic_shared" else 256, generator=torch.Generator().manual_seed(3))
    with pytest.raises(RuntimeError, match=match):
        emu.selftest(name, x)


def test_dynamic_shared_memory_beyond_48k_after_opt_in(emu):
    out = emu.selftest("dynamic_shared_optin", torch.zeros(64 * 1024, dtype=torch.uint8))
    assert torch.equal(out, (torch.arange(64 * 1024) % 256).to(torch.uint8))


@pytest.mark.parametrize("optin,match", [("49152", "cudaFuncSetAttribute.* returned"),
                                         ("1e5", "PYCLR_EMU_SHARED_OPTIN: expected bytes")])
def test_a_smaller_devices_shared_memory(emu, monkeypatch, optin, match):
    # a device with a 48 KB opt-in limit refuses 64 KB of dynamic shared memory
    monkeypatch.setenv("PYCLR_EMU_SHARED_OPTIN", optin)
    with pytest.raises(RuntimeError, match=match):
        emu.selftest("dynamic_shared_optin", torch.zeros(64 * 1024, dtype=torch.uint8))


def test_bad_block_order_is_a_clear_error(emu, monkeypatch):
    monkeypatch.setenv("PYCLR_EMU_BLOCK_ORDER", "sideways")
    with pytest.raises(RuntimeError, match="PYCLR_EMU_BLOCK_ORDER: expected forward, reverse or shuffle"):
        emu.selftest("warp_sum", torch.zeros(128))


def tf32_truncate(x):
    return (x.view(torch.int32) & ~0x1FFF).view(torch.float32)


def tf32_round(x):
    """cvt.rna.tf32.f32: to nearest, ties away from zero."""
    return ((x.view(torch.int32) + 0x1000) & ~0x1FFF).view(torch.float32)


@pytest.mark.parametrize("rounded", [False, True])
def test_tf32_mma(emu, rounded):
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(16, 8, generator=g), torch.randn(8, 16, generator=g)
    out = emu.selftest("mma_tf32_rounded" if rounded else "mma_tf32", torch.cat([a.flatten(), b.flatten()]))
    op = tf32_round if rounded else tf32_truncate
    expected = op(a).double() @ op(b).double()
    torch.testing.assert_close(out.double(), expected, rtol=1e-6, atol=1e-6)
    # the tensor cores see 10 mantissa bits: far from the fp32 product
    assert (out.double() - a.double() @ b.double()).abs().max() > 1e-4


def test_bf16_mma_with_column_major_operand(emu):
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(16, 16, generator=g).bfloat16(), torch.randn(16, 16, generator=g).bfloat16()
    out = emu.selftest("mma_bf16", torch.cat([a.flatten(), b.flatten()]))
    torch.testing.assert_close(out.double(), a.double() @ b.double().T + 1, rtol=1e-6, atol=1e-5)
