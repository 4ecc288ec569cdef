import pytest
import torch

from pyclr.analysis import invariance_score


def _labels(n, classes):
    return torch.arange(n) % classes


def test_a_class_indicator_that_ignores_the_views_scores_one_over_p():
    n, views, classes = 60, 4, 3
    y = _labels(n, classes)
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(n, views, 5, generator=g)
    indicator = torch.nn.functional.one_hot(y, classes).float().unsqueeze(1).expand(n, views, classes)
    x = torch.cat([indicator, noise], dim=2)
    result = invariance_score(x, y, top_k=1)
    assert result.score == pytest.approx(classes)
    for c in range(classes):
        assert result.unit_scores[c, c] == pytest.approx(classes)
        assert result.local_rate[c, c] == 1.0
        assert result.global_rate[c, c] == pytest.approx(1 / classes)


def test_units_that_ignore_the_class_score_about_one():
    n, views, classes, units = 400, 8, 4, 64
    y = _labels(n, classes)
    g = torch.Generator().manual_seed(1)
    per_view_noise = torch.randn(n, views, units, generator=g)
    # invariant to the views but blind to the class: constant per instance, random across instances
    per_instance = torch.randn(n, 1, units, generator=g).expand(n, views, units)
    for x in (per_view_noise, per_instance):
        result = invariance_score(x, y, top_k=units)
        assert result.score == pytest.approx(1.0, abs=0.05)
        assert torch.allclose(result.global_rate, torch.full_like(result.global_rate, 1 / classes), atol=1e-6)


def test_top_k_averages_the_best_units_of_each_class_and_imbalance_uses_p_of_y():
    y = torch.tensor([0] * 30 + [1] * 10)  # P(0) = 3/4, P(1) = 1/4
    views = 2
    indicator = torch.stack([(y == 0).float(), (y == 1).float()], 1).unsqueeze(1).expand(40, views, 2)
    x = torch.cat([indicator, torch.zeros(40, views, 2)], 2) + torch.linspace(0, 1e-3, 4)  # 2 dead units
    result = invariance_score(x, y, top_k=2)
    assert result.unit_scores[0, 0] == pytest.approx(4 / 3)
    assert result.unit_scores[1, 1] == pytest.approx(4.0)
    # the dead (constant) units never fire above their thresholds, so their ratio is 0 or 1, never inf/NaN
    assert torch.isfinite(result.unit_scores).all()
    assert result.per_class[1] == pytest.approx((4.0 + result.unit_scores[1].sort().values[-2].item()) / 2)
    assert result.score == pytest.approx(result.per_class.mean().item(), rel=1e-6)


def test_ties_at_the_threshold_do_not_inflate_a_units_score():
    # a ReLU unit that is 0 except on all views of 2 of class 0's 10 instances: only 10 of the
    # 50 views that P(0) = 1/6 allows can fire. Divided by that measured rate the unit scored
    # the maximum 1 / P(0) = 6, as if it fired on every view of class 0; by P(0): 0.2 / (1/6)
    y = torch.tensor([0] * 10 + [1] * 20 + [2] * 30)
    x = torch.rand(60, 5, 2, generator=torch.Generator().manual_seed(0))
    x[:, :, 1] = 0
    x[:2, :, 1] = 1.0
    result = invariance_score(x, y, top_k=1)
    assert result.local_rate[0, 1] == pytest.approx(0.2)
    assert result.global_rate[0, 1] == pytest.approx(10 / 300)  # what fired: fewer than P(0)
    assert result.unit_scores[0, 1] == pytest.approx(1.2)
    assert result.unit_scores[1:, 1].eq(0).all()  # never fires for classes 1 and 2


def test_default_top_k_is_one_percent_of_the_units():
    x = torch.randn(20, 2, 250)
    assert invariance_score(x, _labels(20, 2)).top_k == 3


@pytest.mark.parametrize("views, labels, top_k, match", [
    (torch.randn(10, 8), _labels(10, 2), 1, "views: expected a float tensor of shape \\(n, V, D\\)"),
    (torch.randn(10, 2, 3), _labels(9, 2), 1, "labels: expected integer labels of shape \\(10,\\)"),
    (torch.randn(10, 2, 3), _labels(10, 2).float(), 1, "labels: expected integer labels"),
    (torch.randn(10, 2, 3), -_labels(10, 2) - 1, 1, "labels: expected labels >= 0"),
    (torch.randn(10, 2, 3), None, 1, "labels: expected integer labels of shape \\(10,\\), got NoneType"),
    (torch.randn(10, 2, 3), ["cat"] * 10, 1, "labels: expected integer labels of shape \\(10,\\), got list"),
    # results have a row per class id up to the largest: 5,000,000 ids of 512 units killed the process
    (torch.randn(4, 3, 512), [0, 1, 0, 5_000_000], 1, "labels: expected class ids 0..C-1, got ids up to 5000000"),
    (torch.randn(10, 2, 3), _labels(10, 2), 4, "top_k: expected an int in 1..3"),
    (torch.full((10, 2, 3), float("inf")), _labels(10, 2), 1, "views: contains NaN or infinite"),
])
def test_bad_inputs(views, labels, top_k, match):
    with pytest.raises(ValueError, match=match):
        invariance_score(views, labels, top_k=top_k)


def test_wide_unsigned_labels_are_read_as_integers():
    # numpy uint64 labels reached torch's min: '"min_all" not implemented for 'UInt64''
    np = pytest.importorskip("numpy")
    views = torch.rand(12, 3, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(12) % 3
    expected = invariance_score(views, labels)
    torch.testing.assert_close(invariance_score(views, labels.numpy().astype(np.uint64)), expected)
