r"""Late fusion of an image embedding with clinical covariates, into a survival head.

:class:`FusionSurvivalNet` is the network trained by
:func:`fracrisk.training.fit_cox_network`: images go through an encoder (any registered
one), the embedding is concatenated with the clinical covariates, and a head from
:func:`fracrisk.heads.create_head` maps the joint features to the log hazard ratio
:math:`\eta` (higher means higher risk). This is the design of Kong et al. 2022 (CNN
features and age, sex, BMI, glucocorticoids, secondary osteoporosis into DeepSurv).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from fracrisk.heads import create_head

__all__ = ["FusionSurvivalNet", "encoder_arguments"]


def encoder_arguments(images) -> tuple[tuple, dict]:
    """How ``images`` are passed to an encoder: ``(args, kwargs)``.

    A tensor is one argument, a tuple or list is unpacked (e.g. ``(patches, mask)``), a
    mapping is passed as keywords.
    """
    if isinstance(images, Mapping):
        return (), dict(images)
    if isinstance(images, (tuple, list)):
        return tuple(images), {}
    return (images,), {}


class FusionSurvivalNet(nn.Module):
    r"""Image encoder + clinical covariates -> survival head (late fusion by concatenation).

    .. math::
        u = [\, g(\text{images}),\ \operatorname{drop}(x) \,], \qquad \eta = h(u),

    with :math:`g` the image encoder (:math:`E` = ``encoder.num_features`` features),
    :math:`x` the :math:`p` clinical covariates and :math:`h` the head.

    Parameters
    ----------
    encoder : torch.nn.Module
        An image encoder with an integer ``num_features`` (e.g. from
        :func:`~fracrisk.encoders.create_encoder`).
    n_covariates : int
        :math:`p`, the number of clinical covariates (already numeric: imputed, one-hot
        encoded and standardised, e.g. by :mod:`fracrisk.preprocessing`); 0 gives an
        image-only model.
    head : str, default "deepsurv"
        Head name in :func:`fracrisk.heads.list_heads`.
    head_kwargs : dict, optional
        Options of the head (e.g. ``{"hidden": (32,), "dropout": 0.2}``).
    covariate_dropout : float, default 0.0
        Dropout probability on each covariate in training (inverted dropout: kept
        covariates are scaled by :math:`1/(1-p)`); with standardised covariates a dropped
        one is set to the cohort mean. Pushes the network to use the images rather than
        lean on the covariates alone. In [0, 1).
    auxiliary : sequence of str, default ()
        Names of dense targets (e.g. ``"femoral_neck_t_score"``) predicted from the image
        embedding alone by one linear layer each, :math:`\hat y_k = m_k + s_k\, a_k^\top g`,
        with :math:`m_k, s_k` the target's training mean and SD
        (:meth:`set_auxiliary_scaling`). Trained jointly with the survival loss
        (:func:`fracrisk.losses.auxiliary_loss`), they make the encoder learn what the images
        show, such as bone density, from every patient rather than from the events alone.
    auxiliary_classes : sequence of int, optional
        Per auxiliary target, 0 for a numeric target or its number of classes
        :math:`C_k \ge 2` for a categorical one (codes :math:`0..C_k-1`, e.g. a Genant
        grade 0-3). A categorical target gets :math:`C_k` logits; its prediction is the
        expected class :math:`\sum_c c\, p_c`. Default: every target numeric.

    Attributes
    ----------
    encoder, head : torch.nn.Module
    image_features : int
        :math:`E`.
    num_features : int
        :math:`E + p`, the input size of the head.

    Notes
    -----
    ``images`` is passed to the encoder as it is when it is a tensor, unpacked as
    ``encoder(*images)`` when it is a tuple or list (e.g. ``(patches, mask)`` for
    :class:`~fracrisk.encoders.VertebralPatchEncoder`) and as ``encoder(**images)`` when it
    is a mapping. With :func:`~fracrisk.training.fit_cox_network`, a dataset of items
    ``(images, covariates, time, event)`` trains the network (``(images, time, event)``
    when ``n_covariates == 0``).

    Examples
    --------
    >>> import torch
    >>> from fracrisk.encoders import create_encoder
    >>> encoder = create_encoder("vertebral_patches", pooling="mean")
    >>> net = FusionSurvivalNet(encoder, 5, head_kwargs={"hidden": (16,)}).eval()
    >>> net(torch.rand(3, 5, 32, 32), torch.randn(3, 5)).shape
    torch.Size([3])
    >>> net.num_features
    517
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_covariates: int,
        *,
        head: str = "deepsurv",
        head_kwargs: dict | None = None,
        covariate_dropout: float = 0.0,
        auxiliary: Sequence[str] = (),
        auxiliary_classes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        size = getattr(encoder, "num_features", None)
        if not isinstance(size, int) or size < 1:
            raise ValueError(
                "encoder must be a module with a positive integer attribute num_features, "
                f"got num_features={size!r}"
            )
        if int(n_covariates) != n_covariates or n_covariates < 0:
            raise ValueError(f"n_covariates must be an integer >= 0, got {n_covariates!r}")
        if not 0.0 <= covariate_dropout < 1.0:
            raise ValueError(f"covariate_dropout must be in [0, 1), got {covariate_dropout!r}")
        self.encoder = encoder
        self.n_covariates = int(n_covariates)
        self.image_features = size
        self.num_features = size + self.n_covariates
        self.covariate_dropout = nn.Dropout(covariate_dropout)
        self.head = create_head(head, self.num_features, **dict(head_kwargs or {}))
        if isinstance(auxiliary, str):
            raise TypeError("auxiliary must be a sequence of target names, not a string")
        self.auxiliary_names = [str(a) for a in auxiliary]
        if len(set(self.auxiliary_names)) != len(self.auxiliary_names):
            raise ValueError(f"auxiliary target names repeat: {self.auxiliary_names}")
        k = len(self.auxiliary_names)
        classes = [0] * k if auxiliary_classes is None else [int(c) for c in auxiliary_classes]
        if len(classes) != k or any(c == 1 or c < 0 for c in classes):
            raise ValueError(
                f"auxiliary_classes must give each of the {k} targets 0 (numeric) or a number "
                f"of classes >= 2, got {auxiliary_classes!r}"
            )
        self.auxiliary_classes = classes
        widths = [max(1, c) for c in classes]
        self._auxiliary_splits = widths
        self.auxiliary_head = nn.Linear(size, sum(widths)) if k else None
        if k:  # without targets the state dict is what it always was
            self.register_buffer("auxiliary_mean", torch.zeros(k))
            self.register_buffer("auxiliary_scale", torch.ones(k))

    def set_auxiliary_scaling(self, mean, scale) -> None:
        """Set the targets' units: :math:`m_k` and :math:`s_k > 0` (training mean and SD)."""
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        scale = torch.as_tensor(scale, dtype=torch.float32).reshape(-1)
        k = len(self.auxiliary_names)
        if not k:
            raise ValueError("this network has no auxiliary targets (auxiliary=())")
        if mean.shape != (k,) or scale.shape != (k,) or not bool((scale > 0).all()):
            raise ValueError(f"mean and scale must be {k} numbers, the scales positive")
        self.auxiliary_mean.copy_(mean)
        self.auxiliary_scale.copy_(scale)

    def forward_with_auxiliary(
        self, images, covariates: torch.Tensor | None = None, *, return_logits: bool = False
    ) -> tuple:
        """``(eta, auxiliary)``: the log hazard ratio and the (batch, k) dense predictions.

        Numeric targets are predicted in their units, categorical ones as their expected
        class. With ``return_logits``, a third element lists each target's logits
        ((batch, :math:`C_k`), None for a numeric target), for the loss.
        """
        if self.auxiliary_head is None:
            raise ValueError("this network has no auxiliary targets (auxiliary=())")
        u = self.forward_features(images, covariates)
        predicted, logits = self.auxiliary_from_embedding(u[:, : self.image_features])
        eta = self.head(u).squeeze(-1)
        return (eta, predicted, logits) if return_logits else (eta, predicted)

    def auxiliary_from_embedding(self, z: torch.Tensor) -> tuple[torch.Tensor, list]:
        """``(auxiliary, logits)`` of an image embedding ``z`` (batch, ``image_features``)."""
        if self.auxiliary_head is None:
            raise ValueError("this network has no auxiliary targets (auxiliary=())")
        raw = self.auxiliary_head(z).float()
        columns, logits = [], []
        for j, part in enumerate(torch.split(raw, self._auxiliary_splits, dim=1)):
            if self.auxiliary_classes[j] == 0:
                columns.append(part[:, 0] * self.auxiliary_scale[j] + self.auxiliary_mean[j])
                logits.append(None)
            else:
                grades = torch.arange(part.shape[1], device=part.device, dtype=part.dtype)
                columns.append(torch.softmax(part, dim=1) @ grades)
                logits.append(part)
        return torch.stack(columns, dim=1), logits

    def set_numeric_auxiliary(self, target: str, weight, bias: float) -> None:
        r"""Replace the linear layer of numeric target ``target``: :math:`a_k` and its bias.

        In training-SD units, :math:`\hat y_k = m_k + s_k\,(a_k^\top g + b_k)`; used to refit
        the layer in closed form after training (``ImageSurvivalModel``'s ridge refit).
        """
        if target not in self.auxiliary_names:
            raise ValueError(f"{target!r} is not an auxiliary target ({self.auxiliary_names})")
        j = self.auxiliary_names.index(target)
        if self.auxiliary_classes[j]:
            raise ValueError(f"{target!r} is categorical; only a numeric target's layer is set")
        weight = torch.as_tensor(weight, dtype=self.auxiliary_head.weight.dtype).reshape(-1)
        if weight.shape != (self.image_features,) or not bool(torch.isfinite(weight).all()):
            raise ValueError(f"weight must be {self.image_features} finite numbers")
        row = sum(self._auxiliary_splits[:j])
        with torch.no_grad():
            self.auxiliary_head.weight[row].copy_(weight)
            self.auxiliary_head.bias[row] = float(bias)

    def encode_images(self, images) -> torch.Tensor:
        """Image embedding, shape (batch, image_features); see Notes for ``images``."""
        args, kwargs = encoder_arguments(images)
        return self.encoder(*args, **kwargs)

    def forward_features(self, images, covariates: torch.Tensor | None = None) -> torch.Tensor:
        """Fused features :math:`u`, the input of the head.

        Parameters
        ----------
        images : torch.Tensor, tuple, list or mapping
            The encoder's input (see Notes).
        covariates : torch.Tensor, shape = (batch, n_covariates), optional
            Clinical covariates; required when ``n_covariates > 0``, must be None or have
            zero columns otherwise.

        Returns
        -------
        torch.Tensor, shape = (batch, num_features)
            Image features first, then the covariates.
        """
        z = self.encode_images(images)
        if covariates is not None and not isinstance(covariates, torch.Tensor):
            raise TypeError("Input 'covariates' must be a torch.Tensor")
        if self.n_covariates == 0:
            if covariates is not None and covariates.numel() > 0:
                raise ValueError(
                    "this network has n_covariates=0 but Input 'covariates' has shape "
                    f"{tuple(covariates.shape)}"
                )
            return z
        if covariates is None:
            raise ValueError(
                f"Input 'covariates' is required: this network takes {self.n_covariates} covariates"
            )
        if covariates.shape != (z.shape[0], self.n_covariates):
            raise ValueError(
                f"Input 'covariates' must have shape ({z.shape[0]}, {self.n_covariates}) "
                f"(batch of the images, n_covariates), got {tuple(covariates.shape)}"
            )
        x = self.covariate_dropout(covariates.to(z.dtype))
        return torch.cat([z, x], dim=1)

    def forward(self, images, covariates: torch.Tensor | None = None) -> torch.Tensor:
        r"""Log hazard ratio :math:`\eta`, shape (batch,); higher means higher risk.

        Parameters
        ----------
        images : torch.Tensor, tuple, list or mapping
            The encoder's input (see Notes).
        covariates : torch.Tensor, shape = (batch, n_covariates), optional
            Clinical covariates.
        """
        return self.head(self.forward_features(images, covariates)).squeeze(-1)
