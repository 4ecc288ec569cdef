"""pyclr.render.labels: label maps upsampled to the image, nearest and bilinear."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pyclr.render import upsample_labels


def random_labels(shape, k, seed=0):
    return torch.randint(0, k, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape,factor", [((2, 5, 7), (2, 3)), ((1, 14, 14), (32, 32)), ((3, 4, 6), (1, 5))])
def test_nearest_repeats_each_label_for_integer_factors(shape, factor):
    labels = random_labels(shape, 6)
    size = (shape[1] * factor[0], shape[2] * factor[1])
    expected = labels.repeat_interleave(factor[0], 1).repeat_interleave(factor[1], 2)
    out = upsample_labels(labels, size)
    assert out.dtype == torch.int64 and torch.equal(out, expected)


def test_nearest_matches_torch_for_other_factors():
    labels = random_labels((2, 7, 5), 4, seed=1)
    out = upsample_labels(labels, (16, 11))
    expected = F.interpolate(labels[:, None].double(), size=(16, 11), mode="nearest")[:, 0].long()
    assert torch.equal(out, expected)


def test_single_map_and_numpy_input():
    labels = random_labels((3, 4), 3, seed=2)
    out = upsample_labels(labels.numpy().astype(np.int32), (6, 8))
    assert out.shape == (6, 8) and torch.equal(out, labels.repeat_interleave(2, 0).repeat_interleave(2, 1))


def test_bilinear_votes_with_the_one_hot_weights():
    # cluster 0 holds one corner of a 2x2 map; bilinear upsampling to 8x8 gives pixel (i, j) the
    # weight (1 - y)(1 - x) for that corner, y and x its source coordinates (align_corners=False)
    labels = torch.tensor([[[0, 1], [1, 1]]])
    out = upsample_labels(labels, (8, 8), mode="bilinear")

    def source(i):
        return min(max((i + 0.5) / 4 - 0.5, 0.0), 1.0)

    expected = torch.tensor([[[0 if (1 - source(i)) * (1 - source(j)) > 0.5 else 1 for j in range(8)]
                              for i in range(8)]])
    assert torch.equal(out, expected)
    # where three neighbours outvote the nearest one, bilinear and nearest differ
    assert int(out[0, 3, 3]) == 1 and int(upsample_labels(labels, (8, 8))[0, 3, 3]) == 0


def test_bilinear_keeps_regions_and_ignores_absent_clusters():
    labels = random_labels((2, 6, 6), 5, seed=3)
    out = upsample_labels(labels, (12, 18), mode="bilinear")
    assert torch.equal(out, upsample_labels(labels, (12, 18), mode="bilinear", k=9))
    # a pixel at the centre of a source pixel whose 3x3 neighbourhood is one cluster keeps it
    flat = torch.zeros(1, 3, 3, dtype=torch.int64) + 4
    assert torch.equal(upsample_labels(flat, (30, 30), mode="bilinear"), torch.full((1, 30, 30), 4))


@pytest.mark.parametrize("k,shape,size", [(3, (2, 4, 4), (16, 16)), (40, (2, 7, 5), (30, 21)),
                                          (25, (1, 14, 14), (448, 448)), (6, (1, 8, 8), (5, 5))])
def test_bilinear_equals_the_argmax_of_the_whole_one_hot_stack(k, shape, size, monkeypatch):
    # the clusters are upsampled a chunk at a time; any chunk gives the stack's argmax (ties: lowest)
    from pyclr.render import labels as module

    labels = random_labels(shape, k, seed=k)
    one_hot = F.one_hot(labels, k).permute(0, 3, 1, 2).float()
    expected = F.interpolate(one_hot, size=size, mode="bilinear", align_corners=False).argmax(1)
    for chunk in (1, 4, 16):
        monkeypatch.setattr(module, "BILINEAR_CHUNK", chunk)
        assert torch.equal(upsample_labels(labels, size, mode="bilinear"), expected)


def test_bilinear_memory_does_not_grow_with_the_label_values(monkeypatch):
    # a label of 2e7 made a (1, 2e7 + 1, 4, 4) one-hot stack (1.9 GB); only present clusters
    # are upsampled now, at most BILINEAR_CHUNK planes at a time
    from pyclr.render import labels as module

    planes, interpolate = [], F.interpolate
    monkeypatch.setattr(F, "interpolate", lambda x, **kw: planes.append(x.shape[1]) or interpolate(x, **kw))
    out = upsample_labels(torch.tensor([[0, 2 * 10**7]]), 4, mode="bilinear")
    assert torch.equal(out, torch.tensor([[0, 0, 2 * 10**7, 2 * 10**7]] * 4)) and planes == [2]
    planes.clear()
    labels = random_labels((1, 9, 9), 40, seed=4)
    upsample_labels(labels, 18, mode="bilinear")
    assert max(planes) == module.BILINEAR_CHUNK and sum(planes) == len(labels.unique()) > module.BILINEAR_CHUNK


def test_numpy_label_maps_of_any_integer_dtype_and_stride():
    # uint16 label PNGs are common: torch has no min/max for uint16 (nor uint32/64), and
    # torch.from_numpy refuses a flipped array
    labels = np.array([[0, 1], [2, 3]])
    expected = upsample_labels(torch.from_numpy(labels), 4)
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64, np.int32):
        assert torch.equal(upsample_labels(labels.astype(dtype), 4), expected)
    assert torch.equal(upsample_labels(labels[::-1], 4), upsample_labels(torch.from_numpy(labels[::-1].copy()), 4))
    with pytest.raises(ValueError, match="labels: expected values below 2\\*\\*63, got 18446744073709551615"):
        upsample_labels(np.array([[0, 2**64 - 1]], dtype=np.uint64), 4)  # wrapped to -1: 'labels >= 0'



@pytest.mark.parametrize("call,message", [
    (lambda: upsample_labels(torch.rand(1, 3, 3), 6), "labels: expected an integer dtype"),
    (lambda: upsample_labels(torch.tensor([[[-1, 0]]]), 6), "labels: expected labels >= 0"),
    (lambda: upsample_labels(torch.zeros(4, dtype=torch.int64), 6), "labels: expected a 2-d or 3-d"),
    (lambda: upsample_labels(torch.zeros(1, 2, 2, dtype=torch.int64), 6, mode="cubic"), "mode: expected one of"),
    (lambda: upsample_labels(torch.zeros(1, 2, 2, dtype=torch.int64), (6, 0)), "size: expected"),
    (lambda: upsample_labels(torch.tensor([[[0, 3]]]), 6, mode="bilinear", k=2), "k: expected an int >= "),
    (lambda: upsample_labels(torch.tensor([[[0, 3]]]), 6, k="junk"), "k: expected an int"),  # was ignored
])
def test_bad_input(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
