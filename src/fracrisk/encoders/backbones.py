"""2-D CNN backbones from timm, randomly initialised, returning pooled features.

Every backbone is built with ``timm.create_model(name, pretrained=False, num_classes=0,
in_chans=in_chans)``: the classifier is removed, so the network maps images to globally
pooled features. Nothing is ever downloaded: pretrained weights from a hub are refused
(the package must run offline and its model files must load without executing code);
start from a local weights file instead (``weights=``: safetensors, or a torch checkpoint
read with ``weights_only=True``).

Throughput on a CPU (timm, batch 1, 224 px, i7-12700H): mobilenetv3_small_100 374 img/s,
convnext_atto 108, resnet10t 101, efficientnet_b0 94, resnet18 62, densenet121 29. The
default, ``resnet10t`` (4.9 M parameters with one input channel), is small enough to train on
a CPU at 32-128 px.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["DEFAULT_BACKBONE", "ImageBackbone", "create_backbone", "load_local_weights"]

#: The default backbone of every encoder: small and fast on a CPU.
DEFAULT_BACKBONE = "resnet10t"

_REFUSED = {
    "pretrained_cfg": "pretrained weights are never loaded",
    "pretrained_cfg_overlay": "pretrained weights are never loaded",
    "checkpoint_path": "timm may read checkpoints with pickle; pass weights=<local file>, "
    "read safely",
    "num_classes": "the backbone always returns pooled features (num_classes=0)",
    "in_chans": "pass in_chans as the second argument",
}


class ImageBackbone(nn.Module):
    """A timm network without classifier: images to pooled features.

    Built by :func:`create_backbone`.

    Parameters
    ----------
    model : torch.nn.Module
        A timm model created with ``num_classes=0``.
    name : str
        Its timm name.
    in_chans : int
        Number of input channels.

    Attributes
    ----------
    num_features : int
        Size of the output features: timm's ``head_hidden_size`` when the model has one
        (e.g. MobileNetV3, whose pooled features pass through a 1x1 convolution), else its
        ``num_features``.
    """

    def __init__(self, model: nn.Module, name: str, in_chans: int) -> None:
        super().__init__()
        self.model = model
        self.name = name
        #: While a list, every forward appends its spatial feature map (n, C, h, w) before
        #: pooling (set by :func:`fracrisk.explain.grad_cam`); None otherwise.
        self.captured_maps: list[torch.Tensor] | None = None
        self.in_chans = in_chans
        size = getattr(model, "head_hidden_size", None) or model.num_features
        self.num_features = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features.

        Parameters
        ----------
        x : torch.Tensor, shape = (n, in_chans, H, W)
            Images, floating point.

        Returns
        -------
        torch.Tensor, shape = (n, num_features)
        """
        features = self.model.forward_features(x)
        if self.captured_maps is not None:  # fracrisk.explain.grad_cam is listening
            self.captured_maps.append(features)
        return self.model.forward_head(features)


def create_backbone(
    name: str = DEFAULT_BACKBONE,
    in_chans: int = 1,
    *,
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    **kwargs,
) -> ImageBackbone:
    """Build a randomly initialised timm backbone that returns pooled features.

    Parameters
    ----------
    name : str, default "resnet10t"
        Any timm model name (``timm.list_models()``), e.g. ``"resnet18"``,
        ``"densenet121"`` (Kim et al. 2024 used DenseNets), ``"convnext_atto"``.
    in_chans : int, default 1
        Input channels (1 for radiographs and DRRs).
    pretrained : bool, default False
        Must be False: hub weights are never downloaded.
    weights : path-like, optional
        A local file of the timm model's weights to start from: safetensors, or a torch
        checkpoint read with ``torch.load(weights_only=True)`` (a ``state_dict``, or a dict
        holding one under ``"state_dict"``/``"model"``). The classifier's tensors are
        ignored (the backbone has none), and RGB weights of the first convolution are
        summed over their channels for one-channel images, as timm does when it adapts
        pretrained weights. Any other missing, unexpected or misshapen tensor is an
        error naming it.
    **kwargs
        Further options of the timm model (``drop_rate``, ``drop_path_rate``,
        ``global_pool``, ``img_size`` for transformers, ...).

    Returns
    -------
    ImageBackbone
        Maps (n, in_chans, H, W) to (n, num_features).

    Raises
    ------
    ValueError
        If ``pretrained`` is true, if a refused option is passed (``checkpoint_path``,
        ``pretrained_cfg``, ``num_classes``), if ``in_chans < 1`` or if ``name`` is not a timm
        model.

    Examples
    --------
    >>> import torch
    >>> backbone = create_backbone("resnet10t", in_chans=1)
    >>> backbone.num_features
    512
    >>> backbone(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 512])
    >>> create_backbone("resnet18", pretrained=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: pretrained=True is not supported: fracrisk never downloads weights ...
    """
    if pretrained:
        raise ValueError(
            "pretrained=True is not supported: fracrisk never downloads weights at run time. "
            "Build the backbone with pretrained=False and load trained weights from a local "
            "safetensors file (safetensors.torch.load_file + load_state_dict)."
        )
    for key, reason in _REFUSED.items():
        if key in kwargs:
            raise ValueError(f"option {key!r} is not accepted by create_backbone: {reason}")
    if int(in_chans) != in_chans or in_chans < 1:
        raise ValueError(f"in_chans must be a positive integer, got {in_chans!r}")
    import timm  # deferred: importing timm takes a second

    if not timm.is_model(name):
        raise ValueError(
            f"unknown timm model {name!r}; timm.list_models() lists the valid names "
            "(e.g. timm.list_models('resnet*'))"
        )
    model = timm.create_model(
        name, pretrained=False, num_classes=0, in_chans=int(in_chans), **kwargs
    )
    if weights is not None:
        load_local_weights(model, weights)
    return ImageBackbone(model, name, int(in_chans))


_CLASSIFIER_PREFIXES = ("fc.", "classifier.", "head.fc.", "head.", "last_linear.")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # noqa: BLE001 - a pickle or a corrupt file alike
            raise ValueError(
                f"{str(path)!r} is not a readable safetensors file of weights ({err})"
            ) from err
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickled code and corrupt files alike
        raise ValueError(
            f"{str(path)!r} could not be read as weights with torch.load(weights_only=True) "
            f"({type(err).__name__}: {err}); save a state_dict or use safetensors"
        ) from err
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{str(path)!r} does not hold a state_dict of tensors")
    return state


def load_local_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a timm model's weights from a local file into ``model`` (see ``create_backbone``).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If a tensor is missing, unexpected (other than the classifier's) or misshapen.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} not found")
    state = {k.removeprefix("module."): v for k, v in _read_state_dict(path).items()}
    own = model.state_dict()
    adapted, problems = {}, []
    for key, value in state.items():
        if key not in own:
            if not key.startswith(_CLASSIFIER_PREFIXES):
                problems.append(f"unexpected tensor {key!r}")
            continue
        target = own[key]
        if value.shape != target.shape:
            if value.ndim == 4 and value.shape[0] == target.shape[0] and target.shape[1] == 1:
                value = value.sum(dim=1, keepdim=True)  # RGB stem -> one channel
            else:
                problems.append(
                    f"tensor {key!r} has shape {tuple(value.shape)}, the model expects "
                    f"{tuple(target.shape)}"
                )
                continue
        adapted[key] = value.to(target.dtype)
    problems += [f"missing tensor {key!r}" for key in own if key not in adapted]
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise ValueError(f"weights {str(path)!r} do not fit this {type(model).__name__}: {shown}")
    model.load_state_dict(adapted)
