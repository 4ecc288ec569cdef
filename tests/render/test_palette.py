"""pyclr.render.palette: the fixed palette and colours kept consistent across k."""
import numpy as np
import pytest
import torch

from pyclr.render import PALETTE, colourise, consistent_colours, match_colours, palette


def test_palette_is_fixed_and_distinct():
    assert PALETTE.shape == (20, 3) and PALETTE.dtype == np.uint8
    assert len({tuple(c) for c in PALETTE}) == 20
    colours = palette(40)
    assert np.array_equal(colours[:20], PALETTE) and np.array_equal(colours, palette(40))
    assert len({tuple(c) for c in colours}) == 40
    # no grey: a colour must stand out on a grey-scale image
    assert (colours.max(1).astype(int) - colours.min(1).astype(int)).min() > 40


def test_every_colour_up_to_the_limit_is_distinct_and_not_grey():
    from pyclr.render.palette import MAX_COLOURS

    colours = palette(MAX_COLOURS)  # one ring of golden-ratio hues repeated its 20th colour at 630
    assert len({tuple(c) for c in colours.tolist()}) == MAX_COLOURS
    assert (colours.max(1).astype(int) - colours.min(1).astype(int)).min() > 40
    # the first 630 colours are those one ring gave before (values recorded from it)
    assert colours[[21, 300, 629]].tolist() == [[61, 114, 242], [242, 115, 61], [61, 242, 114]]


def test_palette_is_the_same_in_every_thread():
    import sys
    import threading

    module = sys.modules["pyclr.render.palette"]  # pyclr.render.palette is also the function's name
    module._table.cache_clear()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # a state grown by several threads at once interleaved its colours
    try:
        results = [None] * 8
        threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, palette(8192 - 7 * k)))
                   for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    reference = palette(8192)
    assert all(np.array_equal(r, reference[:len(r)]) for r in results)


def test_match_colours_needs_maps_of_one_shape():
    # (8, 8) and (4, 16) have as many pixels, and were paired pixel for pixel
    with pytest.raises(ValueError, match=r"labels: expected the shape of prev_labels \(8, 8\), got \(4, 16\)"):
        match_colours(torch.zeros(8, 8, dtype=torch.int64), torch.zeros(4, 16, dtype=torch.int64), torch.tensor([0]))


def halves():
    """8x8 map: cluster 0 on the left half, 1 on the right."""
    labels = torch.zeros(8, 8, dtype=torch.int64)
    labels[:, 4:] = 1
    return labels


def test_a_split_cluster_keeps_its_colour_on_the_larger_part():
    prev = halves()
    new = torch.zeros(8, 8, dtype=torch.int64)  # right half -> cluster 0
    new[:, :4] = 2                              # left half: rows 0-4 cluster 2 (20 px) ...
    new[5:, :4] = 1                             # ... rows 5-7 cluster 1 (12 px)
    colours = match_colours(prev, new, torch.tensor([5, 2]))
    # right keeps the right's colour, the larger left part the left's; the smaller part takes
    # the lowest colour unused by the previous column
    assert colours.tolist() == [2, 0, 5]


def test_the_larger_overlap_keeps_a_contested_colour():
    prev = torch.zeros(10, dtype=torch.int64)   # one cluster
    new = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 3])
    colours = match_colours(prev, new, torch.tensor([7]))
    # all four claim colour 7; cluster 1 (4 px) keeps it, then 0 (3), 2 (2), 3 (1) by size
    assert colours.tolist() == [0, 7, 1, 2]


def test_empty_clusters_get_a_colour_too():
    prev = halves()
    new = halves() * 2  # clusters 0 and 2; 1 is empty
    colours = match_colours(prev, new, torch.tensor([0, 1]), k=4)
    assert colours.tolist() == [0, 2, 1, 3]


def nested_row():
    """k = 2, 3, 4 on a 12x12 map: each step splits the largest region in two."""
    a = torch.zeros(12, 12, dtype=torch.int64)
    a[:, 8:] = 1                     # left 96 px, right 48 px
    b = a.clone() + 10
    b[:, :8] = 0                     # relabelled: the right is now 11, left 0 ...
    b[6:, :8] = 2                    # ... the left split: top 48 (0), bottom 48 (2)
    b[b == 11] = 1
    c = b.clone()
    c[c == 1] = 3                    # right: cluster 3
    c[:6, :4] = 1                    # top-left quarter of the left splits off (24 px)
    return [a, b, c]


def test_a_row_keeps_colours_across_k():
    a, b, c = nested_row()
    colours = consistent_colours([a, b, c])
    assert colours[0].tolist() == [0, 1]          # by size: left (96) first
    assert colours[1].tolist() == [0, 1, 2]       # the top of the left keeps its colour (tie: lower index)
    assert colours[2].tolist() == [0, 3, 2, 1]    # the right keeps 1; the split-off part takes 3
    as_dict = consistent_colours({2: a, 3: b, 4: c})
    assert list(as_dict) == [2, 3, 4] and all(torch.equal(x, y) for x, y in zip(as_dict.values(), colours))


def skewed_maps(seed, ks=(2, 4, 6, 8), shape=(2, 48, 48)):
    """Random label maps whose cluster j is about twice as frequent as j + 1 (sizes and
    overlaps without ties, where the rules pick by index)."""
    gen = torch.Generator().manual_seed(seed)
    maps = []
    for k in ks:
        weights = 2.0 ** -torch.arange(k, dtype=torch.float64)
        maps.append(torch.multinomial(weights, shape[0] * shape[1] * shape[2], replacement=True,
                                      generator=gen).reshape(shape))
    return maps


def test_rendering_does_not_depend_on_the_order_of_the_labels():
    gen = torch.Generator().manual_seed(0)
    maps = skewed_maps(0)
    shuffled = [torch.randperm(int(m.max()) + 1, generator=gen)[m] for m in maps]
    for m, s, cm, cs in zip(maps, shuffled, consistent_colours(maps), consistent_colours(shuffled)):
        assert np.array_equal(colourise(m, cm), colourise(s, cs))


@pytest.mark.parametrize("seed", range(5))
def test_each_cluster_inherits_or_takes_a_new_colour(seed):
    gen = torch.Generator().manual_seed(seed)
    maps = [torch.randint(0, k, (16, 16), generator=gen) for k in (2, 4, 6, 8)]
    colours = consistent_colours(maps)
    assert all(torch.equal(x, y) for x, y in zip(colours, consistent_colours(maps)))  # deterministic
    for i in range(1, len(maps)):
        prev, new = maps[i - 1].flatten(), maps[i].flatten()
        assert len(set(colours[i].tolist())) == len(colours[i])
        for j, colour in enumerate(colours[i].tolist()):
            overlap = torch.bincount(prev[new == j], minlength=len(colours[i - 1]))
            if colour in colours[i - 1].tolist():  # inherited: from the most-overlapped cluster
                assert colours[i - 1][overlap.argmax()] == colour
            else:  # new: at most k_prev + k colours are ever needed
                assert colour < len(colours[i - 1]) + len(colours[i])


@pytest.mark.parametrize("call,message", [
    (lambda: match_colours(halves(), halves()[:4], [0, 1]), "labels: expected the shape of prev_labels"),
    (lambda: match_colours(halves(), halves(), [0]), "prev_colours: expected one colour per cluster"),
    (lambda: match_colours(halves(), halves(), [1, 1]), "prev_colours: expected distinct"),
    (lambda: match_colours(halves(), halves(), [0, 1], k=1), "k: expected an int >= "),
    (lambda: consistent_colours([]), "label_maps: expected at least one"),
    (lambda: consistent_colours([halves()], ks=[2, 3]), "ks: expected one value per label map"),
    (lambda: colourise(halves(), [3]), "colours: expected one colour per cluster"),
    # huge indices: a palette, or a (k_prev x k) overlap table, of that size hung or exhausted memory
    (lambda: palette(10**8), "n: expected an int in 0..8192"),
    (lambda: colourise(torch.tensor([[0, 1]]), [0, 10**8]), "colours: expected values below 8192"),
    (lambda: match_colours(halves(), halves() * 10**9, [0, 1]), "labels: expected values below 4096"),
    (lambda: match_colours(halves(), halves(), [0, 1], k=10**6), "k: expected at most 4096 clusters"),
    (lambda: consistent_colours([torch.tensor([0, 10**10])]), "label_maps\\[0\\]: expected values below 4096"),
    (lambda: consistent_colours([halves()], ks=[10**6]), "ks\\[0\\]: expected at most 4096 clusters"),
])
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
