"""Multi-view DRR encoder: one branch per view (Kim et al. 2024), view order, merging."""

from __future__ import annotations

import pytest
import torch

from fracrisk.encoders import DRR_VIEWS, MultiViewDRREncoder


def _encoder(**kwargs) -> MultiViewDRREncoder:
    torch.manual_seed(0)
    return MultiViewDRREncoder(backbone="resnet10t", **kwargs).eval()


def _views(batch: int = 2, n_views: int = 3) -> torch.Tensor:
    return torch.randn(batch, n_views, 32, 32, generator=torch.Generator().manual_seed(1))


def _n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "shared, pooling, factor",
    [
        pytest.param(False, "concat", 3, id="separate-concat"),
        pytest.param(False, "mean", 1, id="separate-mean"),
        pytest.param(True, "concat", 3, id="shared-concat"),
        pytest.param(True, "mean", 1, id="shared-mean"),
    ],
)
def test_output_shape_and_num_features(shared, pooling, factor):
    encoder = _encoder(shared_backbone=shared, pooling=pooling)
    assert encoder.view_features == 512
    assert encoder.num_features == 512 * factor
    with torch.no_grad():
        out = encoder(_views())
        items = encoder.forward_features(_views())
    assert out.shape == (2, 512 * factor)
    assert items.shape == (2, 3, 512)


def test_default_follows_kim_separate_branches_concatenated():
    encoder = _encoder()
    assert encoder.views == DRR_VIEWS == ("frontal", "lateral", "axial")
    assert not encoder.shared_backbone and encoder.pooling == "concat"
    assert len(encoder.branches) == 3
    weights = [b.model.conv1[0].weight for b in encoder.branches]
    assert len({w.data_ptr() for w in weights}) == 3
    assert not torch.equal(weights[0], weights[1])
    assert _n_params(encoder) == 3 * _n_params(_encoder(shared_backbone=True))


def test_each_view_goes_through_its_own_branch():
    encoder, views = _encoder(), _views()
    with torch.no_grad():
        items = encoder.forward_features(views)
        for i, branch in enumerate(encoder.branches):
            assert torch.allclose(items[:, i], branch(views[:, i : i + 1]), atol=1e-6)
        out = encoder(views)
    assert torch.equal(out, items.flatten(1))


def test_view_order_matters_with_separate_branches():
    encoder, views = _encoder(), _views()
    with torch.no_grad():
        out = encoder(views)
        swapped = encoder(views[:, [1, 0, 2]])
    assert not torch.allclose(out, swapped, atol=1e-3)
    # Changing one view only changes that view's block.
    changed = views.clone()
    changed[:, 2] = torch.randn(2, 32, 32)
    with torch.no_grad():
        out_changed = encoder.forward_features(changed)
        out_items = encoder.forward_features(views)
    assert torch.equal(out_changed[:, :2], out_items[:, :2])
    assert not torch.allclose(out_changed[:, 2], out_items[:, 2], atol=1e-3)


def test_shared_backbone_concat_permutes_blocks_with_the_views():
    encoder, views = _encoder(shared_backbone=True), _views()
    order = [2, 0, 1]
    with torch.no_grad():
        out = encoder(views).reshape(2, 3, -1)
        permuted = encoder(views[:, order]).reshape(2, 3, -1)
    assert torch.allclose(permuted, out[:, order], atol=1e-5)
    assert not torch.allclose(permuted, out, atol=1e-3)


def test_shared_backbone_mean_ignores_view_order():
    encoder, views = _encoder(shared_backbone=True, pooling="mean"), _views()
    with torch.no_grad():
        out = encoder(views)
        permuted = encoder(views[:, [2, 0, 1]])
        items = encoder.forward_features(views)
    assert torch.allclose(out, permuted, atol=1e-5)
    assert torch.allclose(out, items.mean(1), atol=1e-6)


def test_number_of_views_follows_views_option():
    encoder = _encoder(views=("frontal", "lateral"))
    assert len(encoder.branches) == 2 and encoder.num_features == 1024
    with torch.no_grad():
        assert encoder(_views(n_views=2)).shape == (2, 1024)
    with pytest.raises(ValueError, match=r"shape \(batch, 2, H, W\).*got \(2, 3, 32, 32\)"):
        encoder(_views(n_views=3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        pytest.param({"pooling": "max"}, "pooling must be one of 'concat', 'mean'", id="pooling"),
        pytest.param({"views": ()}, "at least one view", id="no-views"),
        pytest.param({"views": ("frontal", "frontal")}, "distinct", id="duplicate-views"),
        pytest.param({"backbone_kwargs": {"pretrained": True}}, "pretrained", id="pretrained"),
        pytest.param({"intensity_quantiles": (0.5, 1.0)}, r"in \(0, 1\)", id="quantile-1"),
        pytest.param({"intensity_quantiles": (0.9, 0.9)}, "distinct", id="quantile-twice"),
    ],
)
def test_invalid_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiViewDRREncoder(**kwargs)


@pytest.mark.parametrize(
    "views, error, match",
    [
        pytest.param(torch.zeros(2, 3, 32, 32, dtype=torch.long), TypeError, "floating", id="int"),
        pytest.param(torch.zeros(2, 3, 1, 32, 32), ValueError, "shape", id="5d"),
        pytest.param(torch.zeros(0, 3, 32, 32), ValueError, "empty batch", id="empty"),
    ],
)
def test_invalid_inputs_name_the_argument(views, error, match):
    with pytest.raises(error, match=f"Input 'views'.*{match}|{match}"):
        _encoder()(views)


QUANTILES = (0.5, 0.9, 0.99)


def test_intensity_quantiles_are_appended_standardised():
    encoder = _encoder(intensity_quantiles=QUANTILES)
    assert encoder.num_features == 3 * 512 + 3 * len(QUANTILES)
    views = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    views[:, 1] += torch.arange(4.0)[:, None, None]  # the lateral view brighter per patient
    expected = torch.stack(
        [
            torch.quantile(views[:, v].flatten(1), torch.tensor(QUANTILES), dim=1).T
            for v in range(3)
        ],
        1,
    ).flatten(1)  # view-major
    assert torch.allclose(encoder.view_quantiles(views), expected, atol=1e-6)
    encoder.train()
    out = encoder(views)
    assert out.shape == (4, encoder.num_features)
    tail = out[:, -9:]  # training mode: standardised over the batch
    assert torch.allclose(tail.mean(0), torch.zeros(9), atol=1e-5)
    lateral = tail[:, 3:6]
    assert torch.all(lateral[1:] > lateral[:-1])  # the brightness order survives
    # The CNN features are those of the encoder without quantiles.
    plain = _encoder().train()
    assert torch.allclose(out[:, :-9], plain(views), atol=1e-5)


def test_intensity_quantiles_are_refused_where_absent_and_need_numbers():
    with pytest.raises(ValueError, match="no intensity_quantiles"):
        _encoder().view_quantiles(_views())
    with pytest.raises(TypeError, match="sequence of numbers"):
        MultiViewDRREncoder(intensity_quantiles=0.9)
