"""VolumeCTEncoder: the 3-D ResNet arm of Kim et al.'s ablation."""

from __future__ import annotations

import pytest
import torch

from fracrisk.encoders import VolumeCTEncoder, create_encoder


def test_a_volume_becomes_one_embedding_per_patient():
    encoder = create_encoder("ct_volume", widths=(4, 8, 8, 16))
    assert isinstance(encoder, VolumeCTEncoder) and encoder.num_features == 16
    volume = torch.randn(3, 1, 10, 12, 12)
    z = encoder(volume)
    assert z.shape == (3, 16) and torch.isfinite(z).all()
    assert encoder.forward_features(volume).shape == (3, 1, 16)
    z.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters() if p.requires_grad)


def test_the_embedding_depends_on_the_density():
    encoder = create_encoder("ct_volume", widths=(4, 8, 8, 16)).eval()
    low, high = torch.zeros(1, 1, 8, 8, 8), torch.ones(1, 1, 8, 8, 8)
    assert not torch.allclose(encoder(low), encoder(high))


@pytest.mark.parametrize(
    ("volume", "error", "match"),
    [
        (torch.zeros(2, 3, 8, 8, 8), ValueError, r"\(batch, 1, D, H, W\)"),
        (torch.zeros(2, 8, 8, 8), ValueError, r"\(batch, 1, D, H, W\)"),
        (torch.zeros(0, 1, 8, 8, 8), ValueError, "empty batch"),
        (torch.zeros(2, 1, 8, 8, 8, dtype=torch.int64), TypeError, "floating-point"),
    ],
)
def test_bad_inputs_are_named(volume, error, match):
    with pytest.raises(error, match=match):
        VolumeCTEncoder(widths=(4, 4, 4, 4))(volume)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="4 positive integers"):
        VolumeCTEncoder(layers=(1, 1))
    with pytest.raises(ValueError, match="stem_stride"):
        VolumeCTEncoder(stem_stride=0)
