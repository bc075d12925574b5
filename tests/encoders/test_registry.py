"""Every registered encoder: one interface, finite output of the declared size, full gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fracrisk.encoders import (
    MultiViewDRREncoder,
    VertebralPatchEncoder,
    _registry,
    create_encoder,
    list_encoders,
    register_encoder,
)

# timm zero-initialises the last normalisation of each residual block, so at initialisation
# the convolutions inside a block get exactly zero gradient; switch that off here so the test
# can require a non-zero gradient for every parameter.
_RESNET = {"backbone": "resnet10t", "backbone_kwargs": {"zero_init_last": False}}
# name -> (tiny constructor options, input shape (batch, items, H, W) or, for a volume,
# (batch, 1, D, H, W)). A new encoder must add its case here:
# test_every_registered_encoder_has_a_case fails otherwise.
ENCODER_CASES: dict[str, tuple[dict, tuple[int, ...]]] = {
    "multiview_drr": (_RESNET, (4, 3, 32, 32)),
    "vertebral_patches": (_RESNET, (4, 5, 32, 32)),
    "ct_volume": ({"widths": (4, 8, 8, 16)}, (4, 1, 8, 8, 8)),
}


def test_every_registered_encoder_has_a_case():
    assert sorted(ENCODER_CASES) == list_encoders()


@pytest.mark.parametrize("name", list_encoders())
def test_every_encoder_forward_and_backward(name):
    torch.manual_seed(0)
    kwargs, shape = ENCODER_CASES[name]
    encoder = create_encoder(name, **kwargs).train()
    assert isinstance(encoder.num_features, int) and encoder.num_features > 0
    images = torch.randn(*shape)
    out = encoder(images)
    assert out.shape == (shape[0], encoder.num_features)
    assert torch.isfinite(out).all()
    items = encoder.forward_features(images)
    assert items.shape[:2] == shape[:2] and items.dim() == 3
    out.pow(2).sum().add(out.sum()).backward()
    for pname, param in encoder.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", list_encoders())
def test_every_encoder_rejects_a_wrong_number_of_items(name):
    kwargs, shape = ENCODER_CASES[name]
    encoder = create_encoder(name, **kwargs)
    wrong = (shape[0], shape[1] + 1, *shape[2:])
    with pytest.raises(ValueError, match=rf"shape \(batch, {shape[1]}, (D, )?H, W\)"):
        encoder(torch.zeros(wrong))


def test_list_encoders_filters_by_pattern():
    assert list_encoders() == ["ct_volume", "multiview_drr", "vertebral_patches"]
    assert list_encoders("multi*") == ["multiview_drr"]
    assert list_encoders("*patch*") == ["vertebral_patches"]
    assert list_encoders("densenet*") == []


def test_create_encoder_builds_the_registered_class_with_options():
    multiview = create_encoder("multiview_drr", shared_backbone=True, pooling="mean")
    assert isinstance(multiview, MultiViewDRREncoder)
    assert multiview.shared_backbone and len(multiview.branches) == 1
    assert multiview.num_features == multiview.view_features
    vertebral = create_encoder("vertebral_patches", pooling="concat")
    assert isinstance(vertebral, VertebralPatchEncoder)
    assert vertebral.num_features == 5 * vertebral.level_features


def test_create_encoder_rejects_unknown_names_listing_the_valid_ones():
    with pytest.raises(
        ValueError, match="registered encoders: ct_volume, multiview_drr, vertebral_patches"
    ):
        create_encoder("densenet121")


def test_register_encoder_adds_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(_registry, "_ENCODERS", dict(_registry._ENCODERS))

    @register_encoder("toy_mean")
    class ToyEncoder(nn.Module):
        def __init__(self, *, width: int = 3) -> None:
            super().__init__()
            self.num_features = width
            self.scale = nn.Parameter(torch.ones(width))

        def forward(self, x):
            return x.mean((2, 3))[:, : self.num_features] * self.scale

    assert "toy_mean" in list_encoders()
    assert isinstance(create_encoder("toy_mean", width=2), ToyEncoder)
    with pytest.raises(ValueError, match="'toy_mean' is already registered"):
        register_encoder("toy_mean")(ToyEncoder)
    with pytest.raises(ValueError, match="'multiview_drr' is already registered"):
        register_encoder("multiview_drr")(ToyEncoder)
