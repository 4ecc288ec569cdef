import numpy as np
import pytest
import torch

from pyclr.data import Hierarchy


@pytest.fixture(scope="module")
def tree():
    return Hierarchy()


def test_shape_and_values(tree):
    assert len(tree) == 10_000
    image, labels = tree[4321]
    assert image.shape == (4, 38, 38) and image.dtype == torch.float32
    assert 0 <= image.min() and image.max() < 1
    assert labels["path"].tolist() == [4, 3, 2, 1]
    assert labels["ancestors"].tolist() == [4, 43, 432, 4321]


def test_paths_are_the_digits_of_the_index(tree):
    for i in np.random.default_rng(0).integers(0, 10_000, 50):
        labels = tree[int(i)][1]
        assert labels["path"].tolist() == [int(d) for d in f"{i:04d}"]
        assert labels["ancestors"].tolist() == [int(i) // 10 ** (3 - c) for c in range(4)]


def _pair_sharing_level(rng, level: int) -> tuple[int, int]:
    """Two leaves whose ancestors agree at levels 0..level and differ from level + 1 on."""
    a = [int(d) for d in rng.integers(0, 10, 4)]
    b = a[: level + 1] + [(a[level + 1] + int(rng.integers(1, 10))) % 10] + \
        [int(d) for d in rng.integers(0, 10, 2 - level)]
    return int("".join(map(str, a))), int("".join(map(str, b)))


@pytest.mark.parametrize("level", [0, 1, 2])
def test_shared_ancestor_shares_channels(tree, level):
    rng = np.random.default_rng(level)
    for _ in range(20):
        i, j = _pair_sharing_level(rng, level)
        x, y = tree[i][0], tree[j][0]
        for c in range(level + 1):
            assert torch.equal(x[c], y[c])
        for c in range(level + 1, 4):  # a different ancestor at c+1 differs below too
            assert not torch.equal(x[c], y[c])


def test_top_level_differs(tree):
    x, y = tree[123][0], tree[5123][0]  # same digits below, different top-level class
    assert all(not torch.equal(x[c], y[c]) for c in range(4))


def test_mask_counts_with_mixed_branching():
    small = Hierarchy(levels=3, branching=(2, 3, 4), mask_size=5)
    assert len(small) == 24 and small.nodes == [2, 6, 24]
    images = torch.stack([small[i][0] for i in range(24)])
    assert images.shape == (24, 3, 5, 5)
    for c, count in enumerate([2, 6, 24]):
        distinct = {tuple(m.flatten().tolist()) for m in images[:, c]}
        assert len(distinct) == count
    assert small[23][1]["path"].tolist() == [1, 2, 3]
    assert small[23][1]["ancestors"].tolist() == [1, 5, 23]


def test_compose_builds_probes(tree):
    image, labels = tree[7777]  # ancestors 7, 77, 777, 7777
    assert torch.equal(tree.compose(labels["ancestors"].tolist()), image)
    probe = tree.compose([0, labels["ancestors"][1].item(), 999, 9999])  # matches channel 1 only
    assert torch.equal(probe[1], image[1])
    assert not any(torch.equal(probe[c], image[c]) for c in (0, 2, 3))


def test_deterministic_from_seed(tree):
    assert torch.equal(Hierarchy()[42][0], tree[42][0])
    other = Hierarchy(seed=1)[42][0]
    assert all(not torch.equal(other[c], tree[42][0][c]) for c in range(4))


def test_bad_arguments(tree):
    with pytest.raises(ValueError, match="branching: expected 4 values"):
        Hierarchy(branching=(10, 10))
    for bad in (None, {10: 2, 3: 5}, {2, 3}):  # a dict built a tree of its keys, a set of any order
        with pytest.raises(TypeError, match=f"branching: expected an int or a sequence of 2 ints, got "
                                            f"{type(bad).__name__}"):
            Hierarchy(levels=2, branching=bad)
    assert Hierarchy(levels=2, branching=np.array([3, 2])).branching == (3, 2)
    assert Hierarchy(levels=2, branching=range(2, 4)).branching == (2, 3)
    with pytest.raises(ValueError, match="levels"):
        Hierarchy(levels=0)
    with pytest.raises(ValueError, match="levels: expected an int in 1..64, got 1000000"):
        Hierarchy(levels=10**6, branching=2)  # hung
    with pytest.raises(ValueError, match="branching: expected at most 9223372036854775807 leaves"):
        Hierarchy(levels=64, branching=2)  # len() could not be an int index
    with pytest.raises(ValueError, match=r"node: expected an int in 0..99"):
        tree.mask(1, 100)
    with pytest.raises(ValueError, match="nodes: expected 4 node ids"):
        tree.compose([1, 2])
    with pytest.raises(IndexError):
        tree[10_000]


def test_mask_size_is_bounded():
    with pytest.raises(ValueError, match="mask_size: expected an int in 1..8192, got 1000000"):
        Hierarchy(mask_size=10**6)  # was accepted; the first item asked for 10**12 pixels a mask
