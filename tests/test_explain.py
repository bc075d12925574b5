"""Grad-CAM of the log hazard: the identity it satisfies, scaling, masks, references."""

from __future__ import annotations

import pytest
import torch

from fracrisk.encoders import FusionSurvivalNet, create_encoder
from fracrisk.explain import grad_cam, mean_feature_maps, plot_grad_cam


def _network(encoder: str, **kwargs) -> FusionSurvivalNet:
    """An untrained network with a linear head (random, not the zero initialisation)."""
    torch.manual_seed(0)
    network = FusionSurvivalNet(
        create_encoder(encoder, backbone="resnet10t", pooling="mean", **kwargs),
        0,
        head="cox_linear",
    )
    for parameter in network.head.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    return network


@pytest.mark.parametrize("shared", [True, False])
def test_signed_maps_add_up_to_the_log_hazard_against_the_reference(shared):
    """With a linear head after average pooling, eta - eta_ref = the sum over views and
    feature-map cells of the signed maps (exactly, up to rounding): Grad-CAM's weights are the
    head's weights over the h * w cells, and a 2 x 2 map upsampled keeps its mean."""
    network = _network("multiview_drr", shared_backbone=shared).eval()
    images = torch.rand(5, 3, 48, 48) * torch.linspace(0.2, 3.0, 5)[:, None, None, None]
    signed = grad_cam(network, images, signed=True)
    with torch.no_grad():
        cells = network.encoder.branches[0].model.forward_features(images[:1, :1]).shape[-2:]
    assert tuple(cells) == (2, 2)
    per_view = signed.mean(dim=(-2, -1)) * (cells[0] * cells[1])
    with torch.no_grad():
        eta = network(images)
    assert float(eta.std()) > 1e-2  # the identity below is not 0 = 0
    # Reference = this batch's mean feature maps, so eta_ref = the batch mean of eta.
    torch.testing.assert_close(per_view.sum(1), eta - eta.mean(), rtol=1e-3, atol=1e-5)
    # With another reference the identity follows it: eta_ref = eta of the reference group.
    group = 2.0 * torch.rand(4, 3, 48, 48)
    reference = mean_feature_maps(network, [(group, torch.zeros(4, 0))])
    against = grad_cam(network, images, reference=reference, signed=True)
    with torch.no_grad():
        eta_group = network(group)
    torch.testing.assert_close(
        against.mean(dim=(-2, -1)).sum(1) * 4, eta - eta_group.mean(), rtol=1e-3, atol=1e-5
    )


def test_maps_are_scaled_per_patient_and_the_network_is_left_as_it_was():
    network = _network("multiview_drr").train()
    maps = grad_cam(network, torch.rand(6, 3, 64, 64))
    assert network.training  # mode restored
    assert all(b.captured_maps is None for b in network.encoder.branches)
    assert maps.shape == (6, 3, 64, 64) and maps.dtype == torch.float32
    assert float(maps.min()) >= 0.0
    peaks = maps.amax(dim=(1, 2, 3))
    assert torch.all((peaks == 1.0) | (peaks == 0.0)) and bool((peaks == 1.0).any())


def test_missing_vertebrae_get_empty_maps_and_stay_out_of_the_reference():
    network = _network("vertebral_patches").eval()
    patches = torch.rand(4, 5, 64, 64)
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[1, 2] = mask[3, 0] = False
    maps = grad_cam(network, (patches, mask), signed=True)
    assert maps.shape == (4, 5, 64, 64)
    assert float(maps[1, 2].abs().max()) == 0.0 and float(maps[3, 0].abs().max()) == 0.0
    reference = mean_feature_maps(network, [((patches, mask), torch.zeros(4, 0))])
    full = mean_feature_maps(network, [((patches[[0, 2]], mask[[0, 2]]), torch.zeros(2, 0))])
    # Level L1 is missing in patient 3: its average is over patients 0, 1, 2.
    three = mean_feature_maps(network, [((patches[:3], mask[:3]), torch.zeros(3, 0))])
    torch.testing.assert_close(reference[0], three[0])
    assert reference.shape[0] == 5 and full.shape == reference.shape


def test_errors():
    network = _network("multiview_drr")
    with pytest.raises(ValueError, match="one patient has no batch reference"):
        grad_cam(network, torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="reference must have shape"):
        grad_cam(network, torch.rand(2, 3, 32, 32), reference=torch.zeros(3, 7, 1, 1))
    with pytest.raises(TypeError, match="FusionSurvivalNet"):
        grad_cam(network.encoder, torch.rand(2, 3, 32, 32))


def test_plot_overlays(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    images, maps = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    fig = plot_grad_cam(images, maps, labels=["frontal", "lateral", "axial"], titles=["a", "b"])
    fig.savefig(tmp_path / "cam.png")
    assert (tmp_path / "cam.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="same shape"):
        plot_grad_cam(images, maps[:1])
