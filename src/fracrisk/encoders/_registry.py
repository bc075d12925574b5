"""Registry of image encoders: build any encoder by name, list the registered names.

An image encoder is a :class:`torch.nn.Module` with one interface, so one parametrized test
covers them all and the fusion layer takes any of them:

* ``num_features`` : int, the size of the embedding;
* ``forward(images, ...)`` : images to an embedding of shape (batch, num_features);
* ``forward_features(images, ...)`` : images to one embedding per view or per vertebra,
  shape (batch, n_items, item_features), before pooling.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from torch import nn

__all__ = ["create_encoder", "list_encoders", "register_encoder"]

_ENCODERS: dict[str, Callable[..., nn.Module]] = {}


def register_encoder(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding an encoder class or builder to the registry under ``name``.

    Parameters
    ----------
    name : str
        Registry name; must not be registered already.

    Raises
    ------
    ValueError
        If ``name`` is already registered.
    """

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _ENCODERS:
            raise ValueError(f"an encoder named {name!r} is already registered")
        _ENCODERS[name] = builder
        return builder

    return decorator


def list_encoders(pattern: str = "*") -> list[str]:
    """Registered encoder names matching a shell-style ``pattern``, sorted.

    Examples
    --------
    >>> list_encoders()
    ['ct_volume', 'multiview_drr', 'vertebral_patches']
    >>> list_encoders("vert*")
    ['vertebral_patches']
    """
    return sorted(n for n in _ENCODERS if fnmatch.fnmatch(n, pattern))


def create_encoder(name: str, **kwargs) -> nn.Module:
    """Build the encoder registered as ``name``; ``kwargs`` go to its constructor.

    Parameters
    ----------
    name : str
        A name from :func:`list_encoders`.
    **kwargs
        Options of the encoder (see its class).

    Returns
    -------
    torch.nn.Module
        The encoder, with attributes ``num_features`` and ``registry_config`` (its name and
        ``kwargs``, from which a saved model rebuilds it).

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists the registered names.

    Examples
    --------
    >>> import torch
    >>> encoder = create_encoder("vertebral_patches", backbone="resnet10t", pooling="mean")
    >>> encoder(torch.zeros(2, 5, 32, 32)).shape == (2, encoder.num_features)
    True
    >>> create_encoder("densenet")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown encoder 'densenet'; registered encoders: ct_volume, multiview_drr, ...
    """
    if name not in _ENCODERS:
        raise ValueError(
            f"unknown encoder {name!r}; registered encoders: {', '.join(list_encoders())}"
        )
    encoder = _ENCODERS[name](**kwargs)
    # How to build it again: what a saved model records instead of the module.
    encoder.registry_config = {"name": name, "kwargs": dict(kwargs)}
    return encoder
