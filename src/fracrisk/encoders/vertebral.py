"""Encoder of the L1-L5 vertebral-body patches of a lateral lumbar radiograph.

Kong et al. (Endocrinol Metab 2022) cut one patch per lumbar vertebra L1..L5 from a lateral
radiograph (keypoint detection, then non-masked patches) and feed the patches to a CNN in
front of a DeepSurv head. :class:`VertebralPatchEncoder` applies one shared backbone to every
vertebra (a vertebra is a vertebra: the weights are shared), optionally adds a learned
embedding of the level, and pools the five feature vectors into one embedding. Vertebrae
that could not be cut (a keypoint not found, a vertebra outside the film) are declared in a
mask and left out of the pooling; their patches are never read.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fracrisk.encoders._common import check_choice, check_image_stack
from fracrisk.encoders._registry import register_encoder
from fracrisk.encoders.backbones import DEFAULT_BACKBONE, create_backbone
from fracrisk.imaging.anatomy import VERTEBRAE

__all__ = ["LUMBAR_LEVELS", "VertebralPatchEncoder"]

#: The vertebral levels of Kong et al. 2022, in the order of the input channels.
LUMBAR_LEVELS: tuple[str, ...] = VERTEBRAE  # the one definition, in fracrisk.imaging.anatomy

_POOLING = ("attention", "mean", "max", "concat")


def _check_mask(mask, batch: int, n_levels: int, device: torch.device) -> torch.Tensor:
    """A (batch, n_levels) bool mask; True where the vertebra is present."""
    if mask is None:
        return torch.ones(batch, n_levels, dtype=torch.bool, device=device)
    mask = torch.as_tensor(mask, device=device)
    if mask.shape != (batch, n_levels):
        raise ValueError(
            f"Input 'mask' must have shape ({batch}, {n_levels}) like the patches, "
            f"got {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        if mask.is_floating_point() or torch.any((mask != 0) & (mask != 1)):
            raise ValueError("Input 'mask' must be boolean (or hold only integer 0 and 1)")
        mask = mask != 0
    empty = ~mask.any(1)
    if bool(empty.any()):
        rows = torch.nonzero(empty).reshape(-1)[:10].tolist()
        raise ValueError(
            f"Input 'mask' has no vertebra present in rows {rows}: a patient needs at least "
            "one vertebral patch (drop the patient or use a clinical-only model)"
        )
    return mask


@register_encoder("vertebral_patches")
class VertebralPatchEncoder(nn.Module):
    r"""L1-L5 patch encoder: a shared CNN per vertebra, then pooling over the vertebrae.

    For patient :math:`b` and level :math:`k = 1..K` (L1..L5) with patch :math:`x_k`, the
    feature of the vertebra is

    .. math:: h_k = f(x_k) \odot (1 + \gamma_k) + \beta_k

    (:math:`f` a timm backbone with global pooling, :math:`C` features, shared by all levels;
    :math:`\gamma_k, \beta_k \in \mathbb{R}^C` an optional learned per-level scale and shift,
    the level embedding; without it :math:`h_k = f(x_k)`). With :math:`P \subseteq \{1..K\}`
    the present vertebrae (the mask):

    * ``"attention"`` (gated attention MIL, Ilse et al. 2018):

      .. math::
          s_k = w^\top \big(\tanh(V h_k) \odot \sigma(U h_k)\big), \qquad
          a_k = \frac{\exp s_k}{\sum_{j \in P} \exp s_j}\ (k \in P), \quad a_k = 0\
          (k \notin P), \qquad z = \sum_{k} a_k h_k,

      with :math:`V, U \in \mathbb{R}^{D \times C}` (with biases) and
      :math:`w \in \mathbb{R}^{D}`; the weights :math:`a_k` sum to one over the present
      vertebrae and say which vertebra drives the risk (:meth:`attention_weights`).
    * ``"mean"``: :math:`z = |P|^{-1} \sum_{k \in P} h_k`.
    * ``"max"``: :math:`z_c = \max_{k \in P} h_{kc}` per feature :math:`c`.
    * ``"concat"``: :math:`z = [h_1, \dots, h_K] \in \mathbb{R}^{K C}`, with :math:`h_k = 0`
      for a missing vertebra (the level is then known from the position).

    Parameters
    ----------
    backbone : str, default "resnet10t"
        timm model name of the shared backbone (see
        :func:`~fracrisk.encoders.create_backbone`).
    pooling : {"attention", "mean", "max", "concat"}, default "attention"
        Pooling over the vertebrae, defined above.
    levels : sequence of str, default ("L1", "L2", "L3", "L4", "L5")
        Level names, in the order of the input channels; their number :math:`K` fixes the
        input shape.
    level_embedding : bool, default True
        Learn the per-level scale :math:`\gamma_k` (initialised to 0) and shift
        :math:`\beta_k` (initialised :math:`N(0, 0.02^2)`), so that the otherwise
        permutation-invariant poolings can tell L1 from L5. The scale is what matters for
        ``"mean"``: a shift alone would only add the constant :math:`\bar\beta` to a mean
        over all five vertebrae.
    attention_dim : int, default 128
        :math:`D`, the hidden size of the attention scorer.
    backbone_kwargs : dict, optional
        Further options of :func:`~fracrisk.encoders.create_backbone`.

    Attributes
    ----------
    num_features : int
        Embedding size: :math:`K C` for ``"concat"``, else :math:`C`.
    level_features : int
        :math:`C`, the features of one vertebra.

    Notes
    -----
    Input: patches of shape (batch, K, h, w), float, one single-channel patch per level
    (as cut by :func:`fracrisk.imaging.vertebral_patches`), and an optional mask of shape
    (batch, K), bool, True where the vertebra is present. The backbone runs only on the
    present patches, so the content of a missing patch (zeros, NaN, anything) never
    reaches the output, also in training mode with batch normalisation. A row without any
    present vertebra raises a ``ValueError``. Output: (batch, num_features).

    References
    ----------
    Kong SH et al. (2022) Development of a spine X-ray-based fracture prediction model
    using a deep learning algorithm. Endocrinol Metab 37:674-683. doi:10.3803/EnM.2022.1461.
    Ilse M, Tomczak JM, Welling M (2018) Attention-based deep multiple instance learning.
    ICML, PMLR 80:2127-2136.

    Examples
    --------
    >>> import torch
    >>> encoder = VertebralPatchEncoder(backbone="resnet10t", pooling="attention").eval()
    >>> patches = torch.rand(2, 5, 32, 32)
    >>> mask = torch.tensor([[True] * 5, [False, True, True, True, True]])
    >>> encoder(patches, mask).shape
    torch.Size([2, 512])
    >>> weights = encoder.attention_weights(patches, mask)
    >>> weights[1, 0].item(), torch.allclose(weights.sum(1), torch.ones(2))
    (0.0, True)
    """

    def __init__(
        self,
        *,
        backbone: str = DEFAULT_BACKBONE,
        pooling: str = "attention",
        levels: Sequence[str] = LUMBAR_LEVELS,
        level_embedding: bool = True,
        attention_dim: int = 128,
        backbone_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        levels = (levels,) if isinstance(levels, str) else tuple(str(v) for v in levels)
        if not levels:
            raise ValueError("levels must name at least one vertebra, got an empty sequence")
        if len(set(levels)) != len(levels):
            raise ValueError(f"levels must be distinct, got {levels!r}")
        if int(attention_dim) != attention_dim or attention_dim < 1:
            raise ValueError(f"attention_dim must be a positive integer, got {attention_dim!r}")
        self.levels = levels
        self.pooling = check_choice(pooling, "pooling", _POOLING)
        self.backbone = create_backbone(backbone, 1, **dict(backbone_kwargs or {}))
        c = self.level_features = self.backbone.num_features
        self.num_features = c * len(levels) if pooling == "concat" else c
        self.level_embedding = bool(level_embedding)
        if self.level_embedding:
            self.level_scale = nn.Parameter(torch.zeros(len(levels), c))
            self.level_shift = nn.Parameter(torch.empty(len(levels), c))
            nn.init.trunc_normal_(self.level_shift, std=0.02)
        if pooling == "attention":
            d = int(attention_dim)
            self.attention_tanh = nn.Linear(c, d)  # V
            self.attention_gate = nn.Linear(c, d)  # U
            self.attention_score = nn.Linear(d, 1, bias=False)  # w

    def _features(self, patches, mask) -> tuple[torch.Tensor, torch.Tensor]:
        x = check_image_stack(patches, "patches", len(self.levels), "vertebra")
        b, k, h, w = x.shape
        present = _check_mask(mask, b, k, x.device)
        flat = self.backbone(x[present].unsqueeze(1))  # (n_present, C): missing never read
        features = flat.new_zeros(b, k, flat.shape[1])
        features[present] = flat
        if self.level_embedding:  # missing vertebrae stay exactly zero
            keep = present.unsqueeze(-1).to(features.dtype)
            scale, shift = self.level_scale.to(features.dtype), self.level_shift.to(features.dtype)
            features = features * (1 + scale) + shift * keep
        return features, present

    def _attention(self, features: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        gated = torch.tanh(self.attention_tanh(features)) * torch.sigmoid(
            self.attention_gate(features)
        )
        scores = self.attention_score(gated).squeeze(-1).float()
        return torch.softmax(scores.masked_fill(~present, float("-inf")), dim=1)

    def forward_features(
        self, patches: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-vertebra features :math:`h_k` before pooling.

        Parameters
        ----------
        patches : torch.Tensor, shape = (batch, K, h, w)
            One patch per level, floating point.
        mask : torch.Tensor, shape = (batch, K), bool, optional
            True where the vertebra is present; default all present.

        Returns
        -------
        torch.Tensor, shape = (batch, K, level_features)
            Zero for missing vertebrae.
        """
        return self._features(patches, mask)[0]

    def attention_weights(
        self, patches: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attention weights :math:`a_k` of each vertebra (``pooling="attention"`` only).

        Parameters
        ----------
        patches : torch.Tensor, shape = (batch, K, h, w)
        mask : torch.Tensor, shape = (batch, K), bool, optional

        Returns
        -------
        torch.Tensor, shape = (batch, K), float32
            Non-negative, zero for missing vertebrae, each row sums to one.
        """
        if self.pooling != "attention":
            raise ValueError(
                f"attention_weights needs pooling='attention', this encoder pools by "
                f"{self.pooling!r}"
            )
        return self._attention(*self._features(patches, mask))

    def arrange_feature_maps(
        self, maps: list[torch.Tensor], patches: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Spatial feature maps per vertebra, from the backbone's map of one forward.

        Parameters
        ----------
        maps : list of torch.Tensor
            What the backbone captured during ``forward(patches, mask)`` (one map of the
            present patches, see
            :attr:`~fracrisk.encoders.backbones.ImageBackbone.captured_maps`).
        patches, mask
            The input of that forward.

        Returns
        -------
        torch.Tensor, shape = (batch, K, C, h, w)
            Zero for missing vertebrae.
        """
        b, k = patches.shape[:2]
        present = _check_mask(mask, b, k, patches.device)
        out = maps[0].new_zeros(b, k, *maps[0].shape[1:])
        out[present] = maps[0]
        return out

    def forward(self, patches: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Embedding of the vertebral patches.

        Parameters
        ----------
        patches : torch.Tensor, shape = (batch, K, h, w)
            One patch per level, in the order of ``self.levels``.
        mask : torch.Tensor, shape = (batch, K), bool, optional
            True where the vertebra is present; default all present.

        Returns
        -------
        torch.Tensor, shape = (batch, num_features)
        """
        features, present = self._features(patches, mask)
        if self.pooling == "concat":
            return features.flatten(1)
        if self.pooling == "max":
            return features.masked_fill(~present.unsqueeze(-1), float("-inf")).amax(1)
        if self.pooling == "mean":
            count = present.sum(1, keepdim=True).to(features.dtype)
            return features.sum(1) / count
        weights = self._attention(features, present)
        return (weights.unsqueeze(-1) * features).sum(1)
