import math

import pytest
import torch

from pyclr.analysis import channel_preference, channel_probes, hierarchical_similarity, similarity
from pyclr.data import Hierarchy


@pytest.fixture(scope="module")
def small_hierarchy():
    return Hierarchy(levels=3, branching=4, mask_size=12, seed=3)


@pytest.mark.parametrize("source", ["train", "random"])
def test_each_probe_matches_its_reference_in_one_channel(small_hierarchy, source):
    refs, probes = channel_probes(small_hierarchy, 6, source=source, seed=1)
    levels = small_hierarchy.levels
    assert refs.shape == (6, levels, 12, 12) and probes.shape == (6, levels + 1, levels, 12, 12)
    for kind in range(levels + 1):
        for level in range(levels):
            same = (probes[:, kind, level] == refs[:, level]).flatten(1).all(1)
            assert bool(same.all()) == (kind == level) and bool(same.any()) == (kind == level)


def test_train_probes_use_the_datasets_masks(small_hierarchy):
    refs, probes = channel_probes(small_hierarchy, 4, source="train", seed=2)
    masks = [torch.stack([small_hierarchy.mask(level, node) for node in range(small_hierarchy.nodes[level])])
             for level in range(small_hierarchy.levels)]
    items = torch.stack([small_hierarchy[i][0] for i in range(len(small_hierarchy))])
    for r in refs:
        assert (items == r).flatten(1).all(1).any()
    for level in range(small_hierarchy.levels):
        channel = probes[:, :, level].reshape(-1, 1, 12, 12)
        assert (channel == masks[level].unsqueeze(0)).flatten(2).all(2).any(1).all()


def test_train_references_come_from_the_given_items(small_hierarchy):
    allowed = [5, 17, 40]
    refs, _ = channel_probes(small_hierarchy, 12, items=allowed, seed=0)
    candidates = torch.stack([small_hierarchy[i][0] for i in allowed])
    assert (refs.unsqueeze(1) == candidates).flatten(2).all(2).any(1).all()
    with pytest.raises(ValueError, match="items: expected indices in 0..63, got 5..64"):
        channel_probes(small_hierarchy, 2, items=[5, 64])
    with pytest.raises(ValueError, match="items: expected a non-empty 1-D sequence"):
        channel_probes(small_hierarchy, 2, items=[])
    with pytest.raises(ValueError, match="items: only train references"):
        channel_probes(small_hierarchy, 2, source="random", items=[1])


def test_train_probes_use_only_masks_of_the_given_items(small_hierarchy):
    # "probe item channels were sampled from masks seen during training": the other channels
    # were drawn from every node, so with items = the training indices some were held-out masks
    items = list(range(32))  # level 0: nodes 0-1 of 4; level 1: 0-7 of 16; level 2: 0-31 of 64
    refs, probes = channel_probes(small_hierarchy, 12, items=items, seed=0)
    for level in range(small_hierarchy.levels):
        seen = sorted({small_hierarchy.ancestors(i)[level] for i in items})
        masks = torch.stack([small_hierarchy.mask(level, node) for node in seen])
        channel = probes[:, :, level].reshape(-1, 1, 12, 12)
        assert (channel == masks.unsqueeze(0)).flatten(2).all(2).any(1).all(), level
    with pytest.raises(ValueError, match="items: at level 0 they all descend from one node"):
        channel_probes(small_hierarchy, 2, items=[0, 1])


def test_random_probes_are_not_the_datasets(small_hierarchy):
    refs, _ = channel_probes(small_hierarchy, 3, source="random", seed=0)
    top_masks = torch.stack([small_hierarchy.mask(0, node) for node in range(4)])
    assert not (refs[:, 0].unsqueeze(1) == top_masks).flatten(2).all(2).any()


def _weighted_flatten(images, weights):
    # an "encoder" that weighs channel c by weights[c]: centring makes unshared channels orthogonal on average
    return ((images - 0.5) * weights.view(-1, 1, 1)).flatten(-3)


def test_preference_follows_the_weight_of_the_shared_channel():
    hierarchy = Hierarchy(levels=4, branching=10, mask_size=38, seed=0)
    refs, probes = channel_probes(hierarchy, 40, seed=0)
    weights = torch.tensor([4.0, 3.0, 2.0, 1.0])
    result = channel_preference(_weighted_flatten(refs, weights), _weighted_flatten(probes, weights))
    expected = torch.cat([weights.square() / weights.square().sum(), torch.zeros(1)])
    assert torch.allclose(result.mean, expected, atol=0.02)
    assert result.similarity.shape == (40, 5)
    assert (result.sem > 0).all() and (result.sem < 0.02).all()
    # the standard error of the mean over the 40 references (the raw std passed the bound above)
    sims = result.similarity.double()
    torch.testing.assert_close(result.sem.double(), sims.std(0) / 40 ** 0.5, rtol=1e-5, atol=0)
    torch.testing.assert_close(result.mean.double(), sims.mean(0), rtol=1e-6, atol=1e-9)


def test_preference_bad_inputs():
    with pytest.raises(ValueError, match="references: expected a float tensor of shape \\(n, D\\)"):
        channel_preference(torch.randn(3, 2, 4), torch.randn(3, 2, 4))
    with pytest.raises(ValueError, match="probes: expected shape \\(3, P, 4\\)"):
        channel_preference(torch.randn(3, 4), torch.randn(3, 2, 5))
    with pytest.raises(TypeError, match="dataset: expected a pyclr.data.Hierarchy"):
        channel_probes([1, 2], 3)
    with pytest.raises(ValueError, match="source: expected one of 'train', 'random'"):
        channel_probes(Hierarchy(levels=2, branching=2, mask_size=4), 3, source="test")
    with pytest.raises(ValueError, match="num_references"):
        channel_probes(Hierarchy(levels=2, branching=2, mask_size=4), 0)
    with pytest.raises(ValueError, match="every level needs at least 2 nodes"):
        channel_probes(Hierarchy(levels=2, branching=(1, 3), mask_size=4), 2)


def _tree_embeddings(n_items, weights, dim, view_noise, seed):
    """Items of a 3-level tree (branching 3) embedded as sum_l weights[l] * e(ancestor at l) plus
    per-view noise: within-class similarity at level l is about sum_{j<=l} w_j^2 / total."""
    g = torch.Generator().manual_seed(seed)
    leaves = torch.randperm(27, generator=g)[:n_items]
    ancestors = torch.stack([leaves // 9, leaves // 3, leaves], 1)
    codes = [torch.randn(count, dim, generator=g) / dim ** 0.5 for count in (3, 9, 27)]
    clean = sum(w * codes[level][ancestors[:, level]] for level, w in enumerate(weights))
    views = clean.unsqueeze(1) + view_noise * torch.randn(n_items, 2, dim, generator=g) / dim ** 0.5
    return views, ancestors


def test_hierarchical_similarity_recovers_the_level_weights():
    weights = [3.0, 2.0, 1.0]
    noise = 0.5
    views, ancestors = _tree_embeddings(27, weights, 8192, noise, seed=0)
    result = hierarchical_similarity(views, ancestors)
    total = sum(w * w for w in weights) + noise ** 2
    share = [w * w / total for w in weights]
    # 9 items per top-level class: 18 of its 72 ordered pairs also share their level-1 class
    assert result.within[0] == pytest.approx(share[0] + 18 / 72 * share[1], abs=0.02)
    assert result.within[1] == pytest.approx(share[0] + share[1], abs=0.02)
    assert math.isnan(result.within[2]) and result.within_pairs[2] == 0  # every leaf is its own item
    assert result.across[0] == pytest.approx(0.0, abs=0.02)
    assert result.across[1] == pytest.approx(share[0], abs=0.02)
    assert result.across[2] == pytest.approx(share[0] + share[1], abs=0.02)
    assert result.across_view == pytest.approx(1 - noise ** 2 / total, abs=0.02)


def test_hierarchical_similarity_counts_pairs():
    # 4 items, 2 views: top level {0,1} {2,3}; level 1 all distinct
    ancestors = torch.tensor([[0, 0], [0, 1], [1, 2], [1, 3]])
    result = hierarchical_similarity(torch.randn(4, 2, 5), ancestors)
    # within level 0: item pairs (0,1), (2,3), both orders, 2x2 view pairs each
    assert result.within_pairs.tolist() == [2 * 2 * 4, 0]
    # across level 0: 8 ordered item pairs x 4; across level 1 (same parent): the same pairs as within level 0
    assert result.across_pairs.tolist() == [8 * 4, 2 * 2 * 4]


@pytest.mark.parametrize("block", [1, 7, 80])
def test_hierarchical_similarity_in_blocks_equals_the_whole_matrix(monkeypatch, block):
    """Rows of the similarity matrix are taken a block at a time (memory O(block), not
    (nV)^2): any block size gives the whole matrix's means, from an explicit computation."""
    g = torch.Generator().manual_seed(1)
    n, v = 13, 3
    views, ancestors = torch.randn(n, v, 6, generator=g), torch.randint(0, 3, (n, 2), generator=g)
    monkeypatch.setattr(similarity, "SIMILARITY_BLOCK", block * n * v)  # `block` rows at a time
    result = hierarchical_similarity(views, ancestors)
    z = torch.nn.functional.normalize(views.reshape(n * v, -1).double(), dim=1)
    sim, item = z @ z.T, torch.arange(n).repeat_interleave(v)
    cls = ancestors[item]
    same_item = item[:, None] == item[None]
    parent = torch.ones_like(same_item)
    for level in range(2):
        same = cls[:, level, None] == cls[None, :, level]
        for got, count, mask in ((result.within, result.within_pairs, same & ~same_item),
                                 (result.across, result.across_pairs, ~same & parent)):
            assert count[level] == mask.sum()
            assert got[level].item() == pytest.approx(sim[mask].mean().item(), abs=1e-6)
        parent = same
    views_mask = same_item & ~torch.eye(n * v, dtype=torch.bool)
    assert result.across_view == pytest.approx(sim[views_mask].mean().item(), abs=1e-12)


def test_hierarchical_similarity_bad_inputs():
    with pytest.raises(ValueError, match="views: expected a float tensor of shape \\(n, V, D\\)"):
        hierarchical_similarity(torch.randn(4, 5), torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="ancestors: expected shape \\(4, L\\)"):
        hierarchical_similarity(torch.randn(4, 2, 5), torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="ancestors: expected integer labels"):
        hierarchical_similarity(torch.randn(4, 2, 5), torch.zeros(4, 2))


def test_one_view_per_item_says_across_view_has_no_pairs():
    ancestors = torch.tensor([[0, 0], [0, 1], [1, 2], [1, 3]])
    result = hierarchical_similarity(torch.randn(4, 1, 5), ancestors)
    assert math.isnan(result.across_view) and result.across_view_pairs == 0
    assert hierarchical_similarity(torch.randn(4, 3, 5), ancestors).across_view_pairs == 4 * 3 * 2


@pytest.mark.parametrize("scale", [1e-20, 1e20])
def test_cosine_similarities_do_not_depend_on_the_scale(scale):
    # activations below the cosine's eps (1e-12) in norm were compared as if they were zero
    g = torch.Generator().manual_seed(2)
    ref, pro = torch.randn(6, 8, generator=g), torch.randn(6, 3, 8, generator=g)
    torch.testing.assert_close(channel_preference(ref * scale, pro * scale).mean, channel_preference(ref, pro).mean)
    views, ancestors = torch.randn(4, 2, 5, generator=g), torch.tensor([[0, 0], [0, 1], [1, 2], [1, 3]])
    tiny, plain = hierarchical_similarity(views * scale, ancestors), hierarchical_similarity(views, ancestors)
    torch.testing.assert_close(tiny.within, plain.within, equal_nan=True)
    assert tiny.across_view == pytest.approx(plain.across_view)


def test_ancestors_and_seeds_of_the_wrong_kind_are_named():
    for ancestors in (None, "abc"):  # torch's 'Could not infer dtype', 'invalid data type'
        with pytest.raises(TypeError, match="ancestors: expected an \\(n, L\\) integer tensor"):
            hierarchical_similarity(torch.randn(4, 2, 5), ancestors)
    with pytest.raises(ValueError, match=r"seed: expected an int in 0..2\*\*63-1, got 18446744073709551616"):
        channel_probes(Hierarchy(levels=2, branching=3, mask_size=8), 3, seed=2**64)  # Overflow ... long long
