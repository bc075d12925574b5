"""Input checks shared by the encoders (one place, messages naming the argument)."""

from __future__ import annotations

import torch

__all__: list[str] = []


def check_image_stack(images, name: str, n_items: int, item: str) -> torch.Tensor:
    """Check a (B, n_items, H, W) floating-point stack of single-channel images."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise TypeError(f"Input {name!r} must be a floating-point torch.Tensor")
    if images.dim() != 4 or images.shape[1] != n_items:
        raise ValueError(
            f"Input {name!r} must have shape (batch, {n_items}, H, W), one {item} per channel, "
            f"got {tuple(images.shape)}"
        )
    if images.shape[0] == 0:
        raise ValueError(f"Input {name!r} is an empty batch")
    return images


def check_choice(value: str, name: str, choices) -> str:
    """``value`` must be one of ``choices``; the message lists them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value
