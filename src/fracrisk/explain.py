r"""Where in the images a predicted risk comes from: Grad-CAM of the log hazard ratio.

Grad-CAM (Selvaraju et al., "Grad-CAM: visual explanations from deep networks via
gradient-based localization", ICCV 2017), adapted to a Cox network. For one image (a DRR view
or a vertebral patch) let :math:`A^c` be channel :math:`c` of the last convolutional feature
map of its backbone and :math:`\eta` the log hazard ratio of its patient. Then

.. math::

    \alpha_c = \frac{1}{hw} \sum_{i,j} \frac{\partial \eta}{\partial A^c_{ij}}, \qquad
    L = \operatorname{ReLU}\Big(\sum_c \alpha_c \big(A^c - \bar A^c\big)\Big),

upsampled bilinearly to the image, where :math:`\bar A^c` is the average feature map of a
reference group of patients (same view or vertebra). The reference is what makes the map
meaningful for a Cox model: :math:`\eta` is defined only up to an additive constant, so the
plain Grad-CAM sum :math:`\sum_c \alpha_c A^c` (each location's contribution to :math:`\eta`
when the head is linear) has an arbitrary sign; its difference from the reference is each
location's contribution to :math:`\eta - \bar\eta`, i.e. to the patient's hazard ratio against
the average patient, to first order. :math:`L` is high where the image raises the hazard
compared with that patient; regions that lower it are cut by the ReLU. Kim et al. (2024)
showed Grad-CAM maps per DRR view. The maps explain the network with the clinical covariates
held at the patient's values; they show where the network looks, not why a fracture happens.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from fracrisk.encoders.backbones import ImageBackbone
from fracrisk.encoders.fusion import FusionSurvivalNet, encoder_arguments

__all__ = ["grad_cam", "mean_feature_maps", "plot_grad_cam"]


class _Capture:
    """Make the encoder's backbones keep their feature maps for the duration of a block."""

    def __init__(self, network: FusionSurvivalNet) -> None:
        if not isinstance(network, FusionSurvivalNet):
            raise TypeError(f"network must be a FusionSurvivalNet, got {type(network).__name__}")
        self.arrange = getattr(network.encoder, "arrange_feature_maps", None)
        if self.arrange is None:
            raise TypeError(
                f"{type(network.encoder).__name__} has no arrange_feature_maps: Grad-CAM does "
                "not know which feature map belongs to which image"
            )
        self.network = network
        self.backbones = [m for m in network.encoder.modules() if isinstance(m, ImageBackbone)]

    def __enter__(self) -> _Capture:
        self.was_training = self.network.training
        self.network.eval()
        for backbone in self.backbones:
            backbone.captured_maps = []
        return self

    def maps(self) -> list[torch.Tensor]:
        """Maps captured so far, in call order; cleared."""
        maps = [m for backbone in self.backbones for m in backbone.captured_maps]
        for backbone in self.backbones:
            backbone.captured_maps = []
        if not maps or any(m.ndim != 4 for m in maps):
            raise ValueError(
                "Grad-CAM needs convolutional backbones with (n, C, h, w) feature maps"
            )
        return maps

    def __exit__(self, *exc) -> None:
        for backbone in self.backbones:
            backbone.captured_maps = None
        self.network.train(self.was_training)


def mean_feature_maps(network: FusionSurvivalNet, batches) -> torch.Tensor:
    """Average feature map per view or vertebra over a group of patients (Grad-CAM reference).

    Parameters
    ----------
    network : FusionSurvivalNet
    batches : iterable
        Batches ``(images, covariates, ...)`` as an :class:`~fracrisk.data.ImageCohortDataset`
        DataLoader yields them (anything after the covariates is ignored).

    Returns
    -------
    torch.Tensor, shape = (n_items, C, h, w), float32
        Missing vertebrae do not count in their level's average.
    """
    total, count = None, None
    device = next(network.parameters()).device
    with _Capture(network) as capture, torch.no_grad():
        for batch in batches:
            images, covariates = batch[0], batch[1]
            images = images.to(device) if isinstance(images, torch.Tensor) else images
            network(images, covariates.to(device))
            args, kwargs = encoder_arguments(images)
            maps = capture.arrange(capture.maps(), *args, **kwargs).float()
            present = (maps != 0).flatten(2).any(-1).float()  # (batch, n_items)
            batch_total, batch_count = maps.sum(0), present.sum(0)
            total = batch_total if total is None else total + batch_total
            count = batch_count if count is None else count + batch_count
    if total is None:
        raise ValueError("batches yielded no batch")
    return total / count.clamp_min(1.0)[:, None, None, None]


def grad_cam(
    network: FusionSurvivalNet,
    images,
    covariates: torch.Tensor | None = None,
    *,
    reference: torch.Tensor | None = None,
    signed: bool = False,
    output: Callable[[FusionSurvivalNet, object, torch.Tensor | None], torch.Tensor] | None = None,
) -> torch.Tensor:
    r"""Grad-CAM maps of the log hazard ratio against a reference, one per view or vertebra.

    Parameters
    ----------
    network : FusionSurvivalNet
        A network whose encoder has ``arrange_feature_maps`` (the multi-view DRR and the
        vertebral-patch encoders) and convolutional backbones. Used in eval mode; its mode is
        restored afterwards.
    images : torch.Tensor, tuple or mapping
        The encoder's input, as for the network: ``(batch, n_items, H, W)`` views or patches
        (or ``(patches, mask)``).
    covariates : torch.Tensor, shape = (batch, n_covariates), optional
        The patients' covariates.
    reference : torch.Tensor, shape = (n_items, C, h, w), optional
        Average feature maps of the reference patients (:func:`mean_feature_maps`, e.g. over
        the training set). Default: the average over this batch (at least 2 patients).
    signed : bool, default False
        Return :math:`\sum_c \alpha_c (A^c - \bar A^c)` itself, upsampled: no ReLU, no
        scaling (negative where the image lowers the hazard). With a linear head after average
        pooling, the maps summed over the feature-map cells of all the patient's images add up
        to :math:`\eta - \bar\eta` (tested).
    output : callable, optional
        ``output(network, images, covariates) -> (batch,)`` tensor: the scalar to explain.
        Default: the network's log hazard ratio :math:`\eta`. A two-stage model passes the
        image part of its Cox stage, :math:`\sum_j \beta_j \hat y_j(x)` over the predicted
        dense targets.

    Returns
    -------
    torch.Tensor, shape = (batch, n_items, H, W), float32
        :math:`L` per image, divided by each patient's largest value over all their images, so
        the maps of one patient are comparable and lie in [0, 1] (all zero where nothing
        raises the hazard above the reference). Missing vertebrae get zero maps.
    """
    args, kwargs = encoder_arguments(images)
    with _Capture(network) as capture, torch.enable_grad():
        eta = network(images, covariates) if output is None else output(network, images, covariates)
        maps = capture.maps()
        # Each patient's eta depends only on their own images (eval mode), so one backward
        # pass gives every patient's gradients.
        grads = torch.autograd.grad(eta.sum(), maps)
    features = capture.arrange([m.detach() for m in maps], *args, **kwargs).float()
    gradients = capture.arrange(list(grads), *args, **kwargs).float()
    if reference is None:
        if features.shape[0] < 2:
            raise ValueError(
                "one patient has no batch reference: pass reference=mean_feature_maps(...)"
            )
        reference = features.mean(0)
    elif tuple(reference.shape) != tuple(features.shape[1:]):
        raise ValueError(
            f"reference must have shape {tuple(features.shape[1:])} (n_items, C, h, w), got "
            f"{tuple(reference.shape)}"
        )
    weights = gradients.mean(dim=(-2, -1), keepdim=True)
    cam = (weights * (features - reference.to(features))).sum(2)
    size = tuple(args[0].shape[-2:]) if args else tuple(next(iter(kwargs.values())).shape[-2:])
    if signed:
        return F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
    cam = F.interpolate(torch.relu(cam), size=size, mode="bilinear", align_corners=False)
    cam = cam.clamp_min(0.0)
    peak = cam.amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), cam)


def plot_grad_cam(images, maps, *, labels=None, titles=None, alpha: float = 0.45):
    """Overlay Grad-CAM maps on their images: one row per patient, one column per image.

    Parameters
    ----------
    images : array-like, shape (batch, n_items, H, W)
        The images the maps were computed for.
    maps : array-like, shape (batch, n_items, H, W)
        From :func:`grad_cam`.
    labels : sequence of str, optional
        Column titles (e.g. the view names or "L1".."L5").
    titles : sequence of str, optional
        Row labels (e.g. patient ids and predicted risks).
    alpha : float, default 0.45
        Opacity of the heat map.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np

    images = np.asarray(images, dtype=np.float32)
    maps = np.asarray(maps, dtype=np.float32)
    if images.ndim != 4 or images.shape != maps.shape:
        raise ValueError(
            f"images and maps must have the same shape (batch, n_items, H, W), got "
            f"{images.shape} and {maps.shape}"
        )
    b, k = images.shape[:2]
    fig, axes = plt.subplots(b, k, figsize=(2.4 * k, 2.4 * b), squeeze=False)
    for i in range(b):
        for j in range(k):
            ax = axes[i, j]
            ax.imshow(images[i, j], cmap="gray")
            ax.imshow(maps[i, j], cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and labels is not None:
                ax.set_title(str(labels[j]))
            if j == 0 and titles is not None:
                ax.set_ylabel(str(titles[i]), fontsize=8)
    fig.tight_layout()
    return fig
