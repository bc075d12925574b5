"""L1-L5 patch encoder (Kong et al. 2022): shared backbone, pooling, missing-vertebra mask."""

from __future__ import annotations

import pytest
import torch

from fracrisk.encoders import LUMBAR_LEVELS, VertebralPatchEncoder

POOLINGS = ["attention", "mean", "max", "concat"]


def _encoder(**kwargs) -> VertebralPatchEncoder:
    torch.manual_seed(0)
    kwargs.setdefault("backbone_kwargs", {"zero_init_last": False})
    return VertebralPatchEncoder(backbone="resnet10t", **kwargs)


def _patches(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 5, 32, 32, generator=torch.Generator().manual_seed(1))


# Row 0 complete, row 1 without L1, row 2 with L3 and L5 only.
MASK = torch.tensor(
    [
        [True, True, True, True, True],
        [False, True, True, True, True],
        [False, False, True, False, True],
    ]
)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_output_shape_and_num_features(pooling):
    encoder = _encoder(pooling=pooling).eval()
    expected = 5 * 512 if pooling == "concat" else 512
    assert encoder.level_features == 512 and encoder.num_features == expected
    with torch.no_grad():
        assert encoder(_patches()).shape == (3, expected)
        assert encoder(_patches(), MASK).shape == (3, expected)
        assert encoder.forward_features(_patches(), MASK).shape == (3, 5, 512)


def test_defaults_follow_kong_levels_with_one_shared_backbone():
    encoder = _encoder()
    assert encoder.levels == LUMBAR_LEVELS == ("L1", "L2", "L3", "L4", "L5")
    assert encoder.pooling == "attention" and encoder.level_embedding
    assert encoder.level_scale.shape == encoder.level_shift.shape == (5, 512)
    backbones = [m for m in encoder.modules() if type(m).__name__ == "ImageBackbone"]
    assert len(backbones) == 1


@pytest.mark.parametrize("training", [True, False], ids=["train-mode", "eval-mode"])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_masked_vertebra_content_does_not_change_the_output(pooling, training):
    encoder = _encoder(pooling=pooling).train(training)
    patches = _patches()
    perturbed = patches.clone()
    perturbed[~MASK] = 1e3 * torch.randn(int((~MASK).sum()), 32, 32)
    with_nan = patches.clone()
    with_nan[~MASK] = float("nan")
    with torch.no_grad():
        out = encoder(patches, MASK)
        # Batch normalisation in training mode sees only the present patches, so even the
        # batch statistics are unchanged: the outputs are bit-identical.
        assert torch.equal(encoder(perturbed, MASK), out)
        assert torch.equal(encoder(with_nan, MASK), out)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("pooling", POOLINGS)
def test_masking_a_present_vertebra_changes_the_output(pooling):
    encoder = _encoder(pooling=pooling).eval()
    with torch.no_grad():
        full = encoder(_patches())
        masked = encoder(_patches(), MASK)
    assert torch.equal(masked[0], full[0])  # row 0 is complete in MASK
    assert not torch.allclose(masked[1:], full[1:], atol=1e-4)


def _present_backbone_features(encoder, patches, row):
    present = MASK[row]
    return encoder.backbone(patches[row, present].unsqueeze(1)), present


@pytest.mark.parametrize(
    "pooling, reduce",
    [
        pytest.param("mean", lambda f: f.mean(0), id="mean"),
        pytest.param("max", lambda f: f.amax(0), id="max"),
    ],
)
def test_pooling_over_present_vertebrae_in_closed_form(pooling, reduce):
    encoder = _encoder(pooling=pooling, level_embedding=False).eval()
    patches = _patches()
    with torch.no_grad():
        out = encoder(patches, MASK)
        for row in range(3):
            features, _ = _present_backbone_features(encoder, patches, row)
            assert torch.allclose(out[row], reduce(features), atol=1e-5), row


def test_concat_places_each_level_in_its_block_and_zeros_missing_ones():
    encoder = _encoder(pooling="concat").eval()
    patches = _patches()
    with torch.no_grad():
        out = encoder(patches, MASK).reshape(3, 5, 512)
        features, present = _present_backbone_features(encoder, patches, 2)
    with torch.no_grad():
        expected = features * (1 + encoder.level_scale[present]) + encoder.level_shift[present]
    assert torch.allclose(out[2, present], expected, atol=1e-5)
    assert torch.equal(out[2, ~present], torch.zeros(3, 512))
    assert torch.equal(out[1, 0], torch.zeros(512))


def test_attention_weights_sum_to_one_over_present_vertebrae():
    encoder = _encoder(pooling="attention").eval()
    patches = _patches()
    with torch.no_grad():
        weights = encoder.attention_weights(patches, MASK)
        features = encoder.forward_features(patches, MASK)
        out = encoder(patches, MASK)
    assert weights.shape == (3, 5)
    assert torch.allclose(weights.sum(1), torch.ones(3), atol=1e-6)
    assert (weights >= 0).all()
    assert torch.equal(weights[~MASK], torch.zeros(int((~MASK).sum())))
    assert (weights[MASK] > 0).all()
    # The pooled embedding is the attention-weighted sum of the vertebra features.
    assert torch.allclose(out, (weights.unsqueeze(-1) * features).sum(1), atol=1e-5)
    # The weights are not uniform: the scorer looks at the content.
    assert not torch.allclose(weights[0], torch.full((5,), 0.2), atol=1e-4)


def test_attention_weights_need_attention_pooling():
    with pytest.raises(ValueError, match="needs pooling='attention'.*'mean'"):
        _encoder(pooling="mean").attention_weights(_patches())


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_level_embedding_makes_vertebra_order_matter(pooling):
    patches = _patches()
    order = [4, 3, 2, 1, 0]
    invariant = _encoder(pooling=pooling, level_embedding=False).eval()
    aware = _encoder(pooling=pooling, level_embedding=True).eval()
    with torch.no_grad():
        # A trained embedding, not the initial one (scale 0).
        aware.level_scale.copy_(torch.randn(5, 512, generator=torch.Generator().manual_seed(2)))
        assert torch.allclose(invariant(patches), invariant(patches[:, order]), atol=1e-5)
        assert not torch.allclose(aware(patches), aware(patches[:, order]), atol=1e-3)


def test_integer_mask_equals_boolean_mask():
    encoder = _encoder().eval()
    with torch.no_grad():
        assert torch.equal(encoder(_patches(), MASK.long()), encoder(_patches(), MASK))


def test_a_row_without_any_vertebra_is_an_error_naming_the_row():
    mask = MASK.clone()
    mask[1] = False
    with pytest.raises(ValueError, match=r"no vertebra present in rows \[1\]"):
        _encoder()(_patches(), mask)


@pytest.mark.parametrize(
    "mask, match",
    [
        pytest.param(torch.ones(3, 4, dtype=torch.bool), r"shape \(3, 5\)", id="shape"),
        pytest.param(torch.full((3, 5), 2), "boolean", id="values"),
        pytest.param(torch.full((3, 5), 1.0), "boolean", id="float"),
    ],
)
def test_invalid_masks(mask, match):
    with pytest.raises(ValueError, match=match):
        _encoder()(_patches(), mask)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        pytest.param({"pooling": "sum"}, "pooling must be one of", id="pooling"),
        pytest.param({"levels": ()}, "at least one vertebra", id="no-levels"),
        pytest.param({"levels": ("L1", "L1")}, "distinct", id="duplicate-levels"),
        pytest.param({"attention_dim": 0}, "attention_dim", id="attention-dim"),
    ],
)
def test_invalid_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VertebralPatchEncoder(**kwargs)


def test_other_level_sets():
    encoder = _encoder(levels=("T12", "L1", "L2"), pooling="concat").eval()
    with torch.no_grad():
        assert encoder(torch.randn(2, 3, 32, 32)).shape == (2, 3 * 512)
    with pytest.raises(ValueError, match=r"Input 'patches' must have shape \(batch, 3, H, W\)"):
        encoder(_patches())
