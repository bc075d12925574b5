"""3-D CNN encoder of the hip CT volume: the ablation of Kim et al.'s 2.5-D design.

Kim et al. (Radiology 2024) chose DRR projections over a 3-D CNN on the CT; their ablation
compares the two. :class:`VolumeCTEncoder` is the 3-D arm: a MONAI 3-D ResNet
(:class:`monai.networks.nets.ResNet`, randomly initialised) on the CT resized to a small
grid (``ImageCohortDataset(kind="volume")``), its globally pooled features as the
embedding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fracrisk.encoders._registry import register_encoder

__all__ = ["VolumeCTEncoder"]


@register_encoder("ct_volume")
class VolumeCTEncoder(nn.Module):
    r"""3-D ResNet on a CT volume: ``(batch, 1, D, H, W)`` -> ``(batch, num_features)``.

    A MONAI ResNet with basic blocks (``layers`` per stage, ``widths`` channels), a
    ``stem_kernel``-wide first convolution at stride ``stem_stride`` and a 3-D max-pool,
    then global average pooling: :math:`z = \operatorname{GAP}(f(x)) \in \mathbb{R}^{C}`
    with :math:`C` = ``widths[-1]``. The defaults (one block per stage, widths 16-128,
    about 0.9 M parameters) fit a CPU; MONAI's ``resnet10`` is ``widths=(64, 128, 256,
    512)``.

    Parameters
    ----------
    layers : sequence of int, default (1, 1, 1, 1)
        Basic blocks per stage.
    widths : sequence of int, default (16, 32, 64, 128)
        Channels per stage (as many as ``layers``).
    stem_kernel : int, default 5
        Kernel size of the first convolution.
    stem_stride : int, default 1
        Its stride (MONAI's ``conv1_t_stride``); small grids keep their resolution.

    Attributes
    ----------
    num_features : int
        Embedding size, ``widths[-1]``.

    Notes
    -----
    Input: float ``(batch, 1, D, H, W)``, as ``ImageCohortDataset(kind="volume")`` gives it
    (HU / 1000 by default). ``forward_features`` returns ``(batch, 1, num_features)``: one
    item (the volume), as the other encoders return one embedding per view or vertebra.
    Grad-CAM is not available for this encoder.

    Examples
    --------
    >>> import torch
    >>> encoder = VolumeCTEncoder()
    >>> encoder(torch.zeros(2, 1, 16, 24, 24)).shape
    torch.Size([2, 128])
    """

    def __init__(
        self,
        *,
        layers: Sequence[int] = (1, 1, 1, 1),
        widths: Sequence[int] = (16, 32, 64, 128),
        stem_kernel: int = 5,
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        from monai.networks.nets import ResNet

        layers, widths = [int(n) for n in layers], [int(n) for n in widths]
        if len(layers) != 4 or len(widths) != 4 or min(layers + widths) < 1:
            raise ValueError(
                "layers and widths must each give 4 positive integers (one per ResNet stage), "
                f"got layers={layers}, widths={widths}"
            )
        for name, value in (("stem_kernel", stem_kernel), ("stem_stride", stem_stride)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.network = ResNet(
            "basic",
            layers,
            widths,
            spatial_dims=3,
            n_input_channels=1,
            conv1_t_size=stem_kernel,
            conv1_t_stride=stem_stride,
            feed_forward=False,  # no classifier: the pooled features
        )
        self.num_features = widths[-1]

    def forward_features(self, volume: torch.Tensor) -> torch.Tensor:
        """The embedding as one item per patient, ``(batch, 1, num_features)``."""
        return self(volume)[:, None]

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """Embed ``volume`` ``(batch, 1, D, H, W)`` into ``(batch, num_features)``."""
        if not isinstance(volume, torch.Tensor) or not volume.is_floating_point():
            raise TypeError("Input 'volume' must be a floating-point torch.Tensor")
        if volume.dim() != 5 or volume.shape[1] != 1:
            raise ValueError(
                "Input 'volume' must have shape (batch, 1, D, H, W), one CT per patient, "
                f"got {tuple(volume.shape)}"
            )
        if volume.shape[0] == 0:
            raise ValueError("Input 'volume' is an empty batch")
        return self.network(volume)
