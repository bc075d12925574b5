r"""Vertebral-body corner detection on lateral lumbar radiographs (a small heatmap U-Net).

The detector finds the 20 corners of L1..L5 (anterior-superior, posterior-superior,
posterior-inferior, anterior-inferior, in the order of :mod:`fracrisk.imaging.anatomy`, which
:mod:`fracrisk.imaging.patches` follows) from which the vertebral patches are cut.

Model
-----
:class:`KeypointNet` is a compact 2-D U-Net (a full-resolution stem, then four levels at
1/2..1/16 resolution, channels ``16-24-32-48-56``; heatmaps upsampled to the input size)
fed with the normalised radiograph plus two fixed coordinate channels (CoordConv: the
vertebral level is a matter of position along the column). It returns one heatmap of
logits per corner; coordinates are the soft-argmax of each heatmap (the expectation of the
pixel coordinates under its spatial softmax), which is differentiable.

Normalisation
-------------
Each radiograph (line integrals) is standardised on its own: ``(x - mean) / std`` over the
image (:func:`normalise_radiographs`). :func:`detect_keypoints` applies it itself, so it
takes raw radiographs.

Training
--------
:func:`train_keypoint_detector` minimises, per corner, the cross-entropy between the
heatmap's spatial softmax and a normalised Gaussian target (sigma 2 px) plus
``coord_weight`` times the L1 distance (px) between the soft-argmax and the true corner.
Augmentation: small intensity jitter (gain, offset, gamma-like curvature, noise) only; no
flips, which would swap anterior and posterior. It trains on fracrisk's Lightning engine
(:func:`fracrisk.training.fit_lightning`, with :class:`KeypointLightningModule` and
:class:`KeypointDataModule`): Lightning's accelerators and precision, atomic checkpoints
and ``resume=True``. The shuffle and the augmentation of every epoch are seeded from
``(seed, epoch)`` alone, so a resumed run is bit-identical to an uninterrupted one.

Weights
-------
Saved as safetensors plus a JSON config (format, architecture, image size, normalisation,
versions); :func:`load_keypoint_detector` never unpickles anything. The shipped detector
(``imaging/data/spine_keypoints.*``) was trained on simulated radiographs
(:func:`fracrisk.simulate.simulate_training_set`, seed 0, by ``fracrisk train-keypoints``
with the training loop that preceded the Lightning engine, so training again now gives other
weights than those).
This module does not depend on the simulator: any ``(images, keypoints)`` training set will
do.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fracrisk.imaging.anatomy import KEYPOINT_LAYOUT, N_KEYPOINTS, VERTEBRA_CORNERS, VERTEBRAE
from fracrisk.training.config import TRAINING_CONSTRAINTS, TrainingConfig, resolve_accelerator

#: Defined on first use (they need Lightning, which ``import fracrisk`` does not import).
_LIGHTNING_CLASSES = ("KeypointDataModule", "KeypointLightningModule")

__all__ = [
    *_LIGHTNING_CLASSES,
    "KeypointNet",
    "detect_keypoints",
    "keypoint_errors_mm",
    "load_keypoint_detector",
    "normalise_radiographs",
    "save_keypoint_detector",
    "train_keypoint_detector",
    "vertebrae_found",
]

_FORMAT = "fracrisk-keypoints/1"
_N_LEVELS, _N_CORNERS = len(VERTEBRAE), len(VERTEBRA_CORNERS)
_DATA_DIR = Path(__file__).parent / "data"
_SHIPPED = _DATA_DIR / "spine_keypoints"
_NORMALISATION = "per-image z-score: (x - mean(x)) / std(x)"
_DEFAULT_SIZE = (176, 96)


# --------------------------------------------------------------------------- network


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class KeypointNet(nn.Module):
    """Compact U-Net giving one heatmap per vertebral corner, coordinates by soft-argmax.

    Parameters
    ----------
    channels : sequence of int, default (16, 24, 32, 48, 56)
        ``channels[0]``: a full-resolution stem convolution; then one U-Net level per
        entry, at 1/2, 1/4, ... resolution (2x max-pooling between levels). The decoder
        returns to 1/2 resolution; the heatmap logits are upsampled (bilinear) to the input
        size, so the soft-argmax is sub-pixel.
    n_keypoints : int, default 20
        Output heatmaps (L1..L5 x 4 corners).
    image_size : (H, W), default (176, 96)
        Size of the training radiographs (recorded with the weights; other sizes are
        padded to a multiple of ``2 ** (len(channels) - 1)`` and work, but are off the
        training distribution).

    Notes
    -----
    ``forward`` maps ``(B, 1, H, W)`` normalised images to ``(B, n_keypoints, H, W)`` logits;
    :meth:`soft_argmax` maps logits to ``(B, n_keypoints, 2)`` ``(x = col, y = row)`` pixels.
    """

    def __init__(
        self,
        channels: tuple[int, ...] | list[int] = (16, 24, 32, 48, 56),
        n_keypoints: int = N_KEYPOINTS,
        image_size: tuple[int, int] = _DEFAULT_SIZE,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) < 3 or min(channels) < 1:
            raise ValueError(f"channels must be at least 3 positive sizes, got {channels!r}")
        self.channels = channels
        self.n_keypoints = int(n_keypoints)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        # image + 2 coordinate channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        self.down = nn.ModuleList()
        c_prev = channels[0]
        for c in channels[1:]:
            self.down.append(_block(c_prev, c))
            c_prev = c
        self.up = nn.ModuleList()
        for c_skip in reversed(channels[1:-1]):
            self.up.append(_block(c_prev + c_skip, c_skip))
            c_prev = c_skip
        self.head = nn.Conv2d(c_prev, self.n_keypoints, 1)

    @property
    def multiple(self) -> int:
        """Input sizes must be multiples of this (``detect_keypoints`` pads as needed)."""
        return 2 ** (len(self.channels) - 1)

    def config(self) -> dict:
        """Architecture arguments, as saved in the JSON config."""
        return {
            "channels": list(self.channels),
            "n_keypoints": self.n_keypoints,
            "image_size": list(self.image_size),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Heatmap logits ``(B, n_keypoints, H, W)`` of normalised images ``(B, 1, H, W)``."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected (B, 1, H, W) images, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        m = self.multiple
        if h % m or w % m:
            raise ValueError(f"image height and width must be multiples of {m}, got {(h, w)}")
        ys = torch.linspace(-1.0, 1.0, h, dtype=x.dtype, device=x.device)
        xs = torch.linspace(-1.0, 1.0, w, dtype=x.dtype, device=x.device)
        grid_y = ys.view(1, 1, h, 1).expand(x.shape[0], 1, h, w)
        grid_x = xs.view(1, 1, 1, w).expand(x.shape[0], 1, h, w)
        y = self.stem(torch.cat([x, grid_y, grid_x], 1))
        skips = []
        for block in self.down:
            y = block(F.max_pool2d(y, 2))
            skips.append(y)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], 1))
        return F.interpolate(self.head(y), size=(h, w), mode="bilinear", align_corners=False)

    @staticmethod
    def soft_argmax(logits: torch.Tensor) -> torch.Tensor:
        """Expected ``(x, y)`` pixel coordinates under each heatmap's spatial softmax."""
        b, k, h, w = logits.shape
        prob = torch.softmax(logits.reshape(b, k, h * w).float(), -1).reshape(b, k, h, w)
        xs = torch.arange(w, dtype=prob.dtype, device=prob.device)
        ys = torch.arange(h, dtype=prob.dtype, device=prob.device)
        return torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], -1)

    def predict_coordinates(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n_keypoints, 2)`` soft-argmax coordinates of normalised images."""
        return self.soft_argmax(self(x))


# --------------------------------------------------------------------------- data


def normalise_radiographs(images: torch.Tensor) -> torch.Tensor:
    """Per-image z-score of radiographs, as the detector expects its input.

    Parameters
    ----------
    images : torch.Tensor
        ``(B, H, W)`` or ``(B, 1, H, W)`` raw radiographs (line integrals or pixel values).

    Returns
    -------
    torch.Tensor
        float32, the same shape: ``(x - mean(x)) / std(x)`` over each image (the standard
        deviation floored at 1e-6, so a constant image becomes zeros).
    """
    x = images.float()
    dims = tuple(range(1, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True)
    return (x - mean) / std.clamp_min(1e-6)


# --------------------------------------------------------------------------- training


def _gaussian_targets(points: torch.Tensor, h: int, w: int, sigma: float) -> torch.Tensor:
    """Normalised Gaussian heatmaps ``(B, K, H, W)`` (each sums to 1) around the points."""
    xs = torch.arange(w, dtype=points.dtype, device=points.device)
    ys = torch.arange(h, dtype=points.dtype, device=points.device)
    gx = torch.exp(-0.5 * ((xs - points[..., 0:1]) / sigma) ** 2)  # (B, K, W)
    gy = torch.exp(-0.5 * ((ys - points[..., 1:2]) / sigma) ** 2)  # (B, K, H)
    target = gy[..., :, None] * gx[..., None, :]
    return target / target.sum((-2, -1), keepdim=True).clamp_min(1e-12)


def _keypoint_loss(
    logits: torch.Tensor, points: torch.Tensor, sigma: float, coord_weight: float
) -> torch.Tensor:
    b, k, h, w = logits.shape
    target = _gaussian_targets(points, h, w, sigma).reshape(b, k, h * w)
    log_prob = torch.log_softmax(logits.reshape(b, k, h * w).float(), -1)
    heatmap = -(target * log_prob).sum(-1).mean()
    coords = KeypointNet.soft_argmax(logits)
    return heatmap + coord_weight * (coords - points).abs().sum(-1).mean()


def _jitter(x: torch.Tensor) -> torch.Tensor:
    """Small intensity jitter of normalised images: gain, offset, curvature, noise.

    Drawn from torch's global generator, which the training module reseeds from
    ``(seed, epoch)`` at the start of every epoch.
    """
    b = x.shape[0]

    def u(scale):
        return (torch.rand(b, 1, 1, 1, device=x.device) * 2 - 1) * scale

    gain, offset, curve = 1 + u(0.1), u(0.1), u(0.05)
    noise = torch.randn(x.shape, device=x.device) * 0.03
    return (x * gain + offset + curve * x * x + noise).to(x.dtype)


@functools.cache
def _lightning_classes() -> dict[str, type]:
    """The Lightning classes of detector training, defined on first use.

    Lightning takes seconds to import; ``import fracrisk`` (which imports this module)
    does not pay for it until a detector is trained.
    """
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from fracrisk.training.module import adamw_with_schedule, epoch_seed
    from fracrisk.training.sampler import EventStratifiedBatchSampler

    class KeypointLightningModule(pl.LightningModule):
        """Trains a :class:`KeypointNet` on the heatmap and coordinate loss.

        Per corner: the cross-entropy between the heatmap's spatial softmax and a
        normalised Gaussian target (``sigma`` px) plus ``coord_weight`` times the L1
        distance (px) between the soft-argmax and the true corner, averaged over the batch.
        Training images get a small intensity jitter (gain, offset, curvature, noise).
        torch is reseeded from ``(config.seed, epoch)`` at every epoch start, so a resumed
        run is bit-identical to an uninterrupted one.

        Parameters
        ----------
        network : KeypointNet
            Trained in place.
        config : TrainingConfig
            Learning rate, weight decay, schedule, epochs and seed.
        steps_per_epoch : int
            Optimiser steps per epoch (for the one-cycle schedule).
        sigma : float, default 2.0
            Standard deviation (px) of the Gaussian heatmap targets.
        coord_weight : float, default 0.1
            Weight of the coordinate loss (per px) against the heatmap loss.
        """

        def __init__(
            self,
            network: KeypointNet,
            config: TrainingConfig,
            steps_per_epoch: int,
            *,
            sigma: float = 2.0,
            coord_weight: float = 0.1,
        ) -> None:
            super().__init__()
            self.network = network
            self.config = config
            self.steps_per_epoch = max(int(steps_per_epoch), 1)
            self.sigma, self.coord_weight = float(sigma), float(coord_weight)
            self._train_sum, self._train_n = 0.0, 0

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            """Heatmap logits of normalised images."""
            return self.network(images)

        def on_train_epoch_start(self) -> None:
            """Reseed the augmentation from (seed, epoch); point the sampler at the epoch."""
            epoch = self.current_epoch
            torch.manual_seed(epoch_seed(self.config.seed, epoch))
            sampler = getattr(self.trainer.train_dataloader, "batch_sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            self._train_sum, self._train_n = 0.0, 0

        def training_step(self, batch, batch_idx: int) -> torch.Tensor:
            """Loss of one batch of jittered images."""
            images, points = batch
            logits = self.network(_jitter(images))
            loss = _keypoint_loss(logits, points, self.sigma, self.coord_weight)
            self._train_sum += float(loss.detach()) * len(images)
            self._train_n += len(images)
            return loss

        def epoch_train_loss(self) -> float:
            """Mean training loss per radiograph over the epoch so far."""
            return self._train_sum / max(self._train_n, 1)

        def on_train_epoch_end(self) -> None:
            """Log the epoch's mean training loss."""
            self.log("train_loss", self.epoch_train_loss(), prog_bar=True, sync_dist=False)

        def configure_optimizers(self):
            """AdamW, with the configured schedule (one-cycle peaks after 15% of the steps)."""
            return adamw_with_schedule(
                self.network.parameters(), self.config, self.steps_per_epoch, warmup=0.15
            )

    class KeypointDataModule(pl.LightningDataModule):
        """The training loader of ``(images, keypoints)`` tensors, built once the rank is known.

        Batches come from a shuffle seeded by ``(config.seed, epoch)`` alone, each global
        batch of ``config.batch_size`` dealt out to the ranks.

        Parameters
        ----------
        images : torch.Tensor
            ``(n, 1, H, W)`` normalised images.
        keypoints : torch.Tensor
            ``(n, 20, 2)`` ``(x, y)`` pixel corners.
        config : TrainingConfig
            Batch size, seed and loader workers.
        """

        def __init__(
            self, images: torch.Tensor, keypoints: torch.Tensor, config: TrainingConfig
        ) -> None:
            super().__init__()
            self.images, self.keypoints, self.config = images, keypoints, config

        def train_dataloader(self) -> DataLoader:
            """The loader of this rank's part of every shuffled global batch."""
            # Every radiograph is a non-event: a shuffle seeded by (seed, epoch) alone.
            sampler = EventStratifiedBatchSampler(
                np.zeros(len(self.images), dtype=bool),
                self.config.batch_size,
                seed=self.config.seed,
                rank=self.trainer.global_rank,
                world_size=self.trainer.world_size,
            )
            workers = self.config.num_workers
            return DataLoader(
                TensorDataset(self.images, self.keypoints),
                batch_sampler=sampler,
                generator=torch.Generator().manual_seed(self.config.seed),
                num_workers=workers,
                persistent_workers=workers > 0,
            )

    classes = {
        "KeypointDataModule": KeypointDataModule,
        "KeypointLightningModule": KeypointLightningModule,
    }
    for cls in classes.values():  # importable (and picklable) as fracrisk.imaging.keypoints.X
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return classes


def __getattr__(name: str):
    if name in _LIGHTNING_CLASSES:
        return _lightning_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_training_data(images, keypoints) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.as_tensor(images, dtype=torch.float32)
    keypoints = torch.as_tensor(keypoints, dtype=torch.float32)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (n, 1, H, W) or (n, H, W), got {tuple(images.shape)}")
    if keypoints.ndim == 4 and keypoints.shape[1:3] == (_N_LEVELS, _N_CORNERS):
        keypoints = keypoints.reshape(len(keypoints), N_KEYPOINTS, 2)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (N_KEYPOINTS, 2):
        raise ValueError(
            f"keypoints must be (n, 20, 2) or (n, 5, 4, 2), got {tuple(keypoints.shape)}"
        )
    if len(images) != len(keypoints) or len(images) == 0:
        raise ValueError(
            f"images and keypoints must hold the same positive number of samples, got "
            f"{len(images)} and {len(keypoints)}"
        )
    if not (torch.isfinite(images).all() and torch.isfinite(keypoints).all()):
        raise ValueError("images and keypoints must be finite")
    return images, keypoints


def _check_training_options(**options) -> None:
    """Lightning options, against the constraints every estimator declares for them."""
    for name, value in options.items():
        allowed = TRAINING_CONSTRAINTS[name]
        if not any(value is None if c is None else c.accepts(value) for c in allowed):
            what = " or ".join("None" if c is None else str(c) for c in allowed)
            raise ValueError(f"{name} must be {what}, got {value!r}")


def train_keypoint_detector(
    images,
    keypoints,
    *,
    epochs: int,
    batch_size: int = 16,
    lr: float = 2e-3,
    seed: int = 0,
    accelerator: str = "auto",
    precision: str | None = None,
    progress: bool = False,
    sigma: float = 2.0,
    coord_weight: float = 0.1,
    channels: tuple[int, ...] = (16, 24, 32, 48, 56),
    time_limit: float | None = None,
    history: list | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> KeypointNet:
    """Train a :class:`KeypointNet` on normalised radiographs and their corners.

    Training runs on fracrisk's Lightning engine (:func:`fracrisk.training.fit_lightning`)
    with a :class:`KeypointLightningModule`: AdamW (weight decay 1e-4) under a one-cycle
    learning-rate schedule, per step, peaking after 15% of the steps. There is no
    validation split: the network of the last epoch is returned.

    Parameters
    ----------
    images : torch.Tensor or numpy.ndarray
        ``(n, 1, H, W)`` (or ``(n, H, W)``) normalised images
        (:func:`normalise_radiographs`), e.g. from
        :func:`fracrisk.simulate.simulate_training_set`; ``H`` and ``W`` multiples of 16
        with the default channels.
    keypoints : torch.Tensor or numpy.ndarray
        ``(n, 20, 2)`` or ``(n, 5, 4, 2)`` ``(x, y)`` pixel corners.
    epochs : int
        Passes over the data.
    batch_size : int, default 16
    lr : float, default 2e-3
        Peak learning rate.
    seed : int, default 0
        Non-negative. Seeds initialisation, and the shuffle and augmentation of every
        epoch from (seed, epoch) alone (the caller's random state is untouched).
    accelerator : {"auto", "cpu", "gpu", "cuda", "mps"}, default "auto"
        Lightning's accelerator; ``"auto"``: CUDA if available, else the CPU. Asking for a
        GPU that is absent raises :class:`~fracrisk.exceptions.DeviceUnavailableError`.
    precision : str, optional
        Lightning's precision; by default ``"bf16-mixed"`` on a GPU and ``"32-true"``
        elsewhere. The loss is computed in float32.
    progress : bool, default False
        Lightning's progress bar (with the epoch's mean loss).
    sigma : float, default 2.0
        Standard deviation (px) of the Gaussian heatmap targets.
    coord_weight : float, default 0.1
        Weight of the L1 soft-argmax coordinate loss (per px) against the heatmap loss.
    channels : tuple of int, default (16, 24, 32, 48, 56)
        Stem and U-Net channels per level.
    time_limit : float, optional
        Stop after the epoch during which this many seconds have passed.
    history : list, optional
        Appended with the mean loss of every epoch (those of the earlier run too when
        resuming).
    checkpoint_dir : str or os.PathLike, optional
        Where ``last.ckpt`` is written (atomically) after every epoch, with a CSV log.
    resume : bool, default False
        Go on from ``checkpoint_dir/last.ckpt`` (from scratch when there is none yet).
        Pass the same data and arguments as the interrupted run: the result is then
        bit-identical to an uninterrupted one.

    Returns
    -------
    KeypointNet
        In eval mode, on the CPU.

    Raises
    ------
    DeviceUnavailableError
        If ``accelerator`` asks for a GPU that is absent.
    FileExistsError
        If ``checkpoint_dir`` holds a checkpoint and ``resume`` is False.
    """
    from fracrisk.training.engine import fit_lightning

    images, keypoints = _check_training_data(images, keypoints)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not (sigma > 0 and coord_weight >= 0):
        raise ValueError(f"sigma must be > 0 and coord_weight >= 0, got {sigma}, {coord_weight}")
    if time_limit is not None and not (time_limit >= 0):
        raise ValueError(f"time_limit must be a non-negative number of seconds, got {time_limit}")
    _check_training_options(
        seed=seed, accelerator=accelerator, precision=precision, checkpoint_dir=checkpoint_dir
    )
    resolve_accelerator(accelerator)  # an absent GPU fails here, before any work
    n, _, h, w = images.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = KeypointNet(channels=channels, image_size=(h, w))
    m = model.multiple
    if h % m or w % m:
        raise ValueError(f"image height and width must be multiples of {m}, got {(h, w)}")
    config = TrainingConfig(
        learning_rate=float(lr),
        weight_decay=1e-4,
        batch_size=int(batch_size),
        max_epochs=int(epochs),
        early_stopping=None,
        lr_schedule="onecycle",
        accelerator=accelerator,
        devices=1,
        precision=precision,
        checkpoint_dir=checkpoint_dir,
        seed=int(seed),
        progress=bool(progress),
    )
    steps_per_epoch = math.ceil(n / config.batch_size)
    classes = _lightning_classes()
    module = classes["KeypointLightningModule"](
        model, config, steps_per_epoch, sigma=sigma, coord_weight=coord_weight
    )
    callbacks = [] if time_limit is None else [_time_limit_callback(float(time_limit))]
    result = fit_lightning(
        module,
        classes["KeypointDataModule"](images, keypoints, config),
        config,
        has_validation=False,
        steps_per_epoch=steps_per_epoch,
        resume=resume,
        callbacks=callbacks,
    )
    if history is not None:
        history.extend(result.history.train_loss)
    return model.cpu().eval()


def _time_limit_callback(seconds: float):
    """A Lightning callback that stops training after the epoch in which ``seconds`` passed."""
    import lightning.pytorch as pl

    class _TimeLimit(pl.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            self.start = time.monotonic()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if time.monotonic() - self.start > seconds:
                trainer.should_stop = True

    return _TimeLimit()


# --------------------------------------------------------------------------- save / load


def _paths(path) -> tuple[Path, Path]:
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".safetensors"), path.with_name(path.name + ".json")


def save_keypoint_detector(model: KeypointNet, path) -> tuple[Path, Path]:
    """Save a detector as ``<path>.safetensors`` (weights) and ``<path>.json`` (config).

    Parameters
    ----------
    model : KeypointNet
    path : str or os.PathLike
        Base path; a ``.safetensors`` or ``.json`` suffix is dropped. Both files are written
        to temporary names first and moved into place only when both are complete.

    Returns
    -------
    (Path, Path)
        The weights and config files.
    """
    from safetensors.torch import save_file

    import fracrisk

    if not isinstance(model, KeypointNet):
        raise TypeError(f"model must be a KeypointNet, got {type(model).__name__}")
    weights_path, config_path = _paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    config = {
        "format": _FORMAT,
        "architecture": "KeypointNet",
        **model.config(),
        "normalisation": _NORMALISATION,
        "coordinates": KEYPOINT_LAYOUT,
        "fracrisk_version": fracrisk.__version__,
        "torch_version": torch.__version__,
        "weights_file": weights_path.name,
    }
    umask = os.umask(0)
    os.umask(umask)
    staged = []
    try:
        fd, tmp_w = tempfile.mkstemp(prefix=".keypoints.", dir=weights_path.parent)
        os.close(fd)
        staged.append(tmp_w)
        save_file(tensors, tmp_w, metadata={"format": _FORMAT})
        fd, tmp_c = tempfile.mkstemp(prefix=".keypoints.", dir=config_path.parent)
        os.close(fd)
        staged.append(tmp_c)
        Path(tmp_c).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for tmp in staged:  # mkstemp creates private files; use the ordinary permissions
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp_w, weights_path)
        os.replace(tmp_c, config_path)
    finally:
        for tmp in staged:
            if os.path.exists(tmp):
                os.remove(tmp)
    return weights_path, config_path


def load_keypoint_detector(path=None) -> KeypointNet:
    """Load a detector saved by :func:`save_keypoint_detector` (safetensors, no pickle).

    Parameters
    ----------
    path : str or os.PathLike, optional
        Base path (a ``.safetensors`` or ``.json`` suffix is accepted). ``None`` loads the
        detector shipped with fracrisk, trained on simulated radiographs.

    Returns
    -------
    KeypointNet
        In eval mode, on the CPU.
    """
    from safetensors.torch import load_file

    weights_path, config_path = _paths(_SHIPPED if path is None else path)
    for p in (config_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(f"keypoint detector file not found: {p}")
    config = json.loads(config_path.read_text())
    if config.get("format") != _FORMAT:
        raise ValueError(
            f"{config_path} is not a fracrisk keypoint detector (format "
            f"{config.get('format')!r}, expected {_FORMAT!r})"
        )
    model = KeypointNet(
        channels=config["channels"],
        n_keypoints=config["n_keypoints"],
        image_size=config["image_size"],
    )
    try:
        state = load_file(str(weights_path))
    except Exception as err:  # noqa: BLE001 - a pickle or a corrupt file alike
        raise ValueError(
            f"{weights_path} is not a safetensors file of detector weights ({err}); "
            "fracrisk never unpickles weights"
        ) from err
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{weights_path}: the weights do not match {config_path} ({err})") from err
    return model.eval()


# --------------------------------------------------------------------------- inference


def detect_keypoints(model: KeypointNet, images, *, batch_size: int = 32) -> np.ndarray:
    """Vertebral-body corners of raw lateral radiographs.

    Parameters
    ----------
    model : KeypointNet
        E.g. :func:`load_keypoint_detector`.
    images : numpy.ndarray or torch.Tensor
        ``(H, W)`` or ``(B, H, W)`` raw radiographs (line integrals, as
        :func:`fracrisk.simulate.spine.lateral_radiograph` gives them, or pixel values;
        each is normalised here).
        Sizes that are not multiples of the network's stride are padded (edge values) at
        the bottom and right.
    batch_size : int, default 32

    Returns
    -------
    numpy.ndarray
        float64 ``(5, 4, 2)`` or ``(B, 5, 4, 2)`` ``(x = col, y = row)`` pixels, L1..L5 x
        (AS, PS, PI, AI).
    """
    if not isinstance(model, KeypointNet):
        raise TypeError(f"model must be a KeypointNet, got {type(model).__name__}")
    if isinstance(images, torch.Tensor):
        x = images.detach().cpu().float()
    else:
        x = torch.from_numpy(np.asarray(images, dtype=np.float32))
    single = x.ndim == 2
    if single:
        x = x[None]
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"images must be (H, W) or (B, H, W), got shape {tuple(x.shape)}")
    if min(x.shape[1:]) < 8:
        raise ValueError(f"images must be at least 8 x 8 pixels, got {tuple(x.shape[1:])}")
    if not torch.isfinite(x).all():
        raise ValueError("images must be finite")
    x = normalise_radiographs(x)[:, None]
    h, w = x.shape[-2:]
    m = model.multiple
    pad_h, pad_w = (-h) % m, (-w) % m
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                chunk = x[i : i + batch_size].to(param.device, param.dtype)
                logits = model(chunk)[..., :h, :w]  # the padding holds no keypoint
                out.append(KeypointNet.soft_argmax(logits).double().cpu())
    finally:
        model.train(was_training)
    points = torch.cat(out).numpy().reshape(-1, model.n_keypoints // _N_CORNERS, _N_CORNERS, 2)
    return points[0] if single else points


def keypoint_errors_mm(pred, true, pixel_spacing) -> np.ndarray:
    """Per-corner Euclidean errors in mm.

    Parameters
    ----------
    pred, true : array-like
        ``(..., 2)`` ``(x = col, y = row)`` pixel coordinates of the same shape, e.g.
        ``(5, 4, 2)`` or ``(B, 5, 4, 2)``.
    pixel_spacing : (row, col) float
        Pixel size in mm (rows are ``y``, columns ``x``).

    Returns
    -------
    numpy.ndarray
        Errors of shape ``pred.shape[:-1]``.
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim < 1 or pred.shape[-1] != 2:
        raise ValueError(
            f"pred and true must have the same shape (..., 2), got {pred.shape} and {true.shape}"
        )
    spacing = np.asarray(pixel_spacing, dtype=np.float64)
    if spacing.shape != (2,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError(
            f"pixel_spacing must be 2 positive sizes (row, col), got {pixel_spacing!r}"
        )
    scale = spacing[::-1]  # (x = col, y = row)
    return np.sqrt((((pred - true) * scale) ** 2).sum(-1))


def vertebrae_found(pred, true, pixel_spacing, *, tolerance_mm: float = 5.0) -> np.ndarray:
    """Whether each vertebra is found: all four predicted corners within ``tolerance_mm``.

    Parameters
    ----------
    pred, true : array-like
        ``(..., 4, 2)`` corners in pixels, e.g. ``(B, 5, 4, 2)``.
    pixel_spacing : (row, col) float
        Pixel size in mm.
    tolerance_mm : float, default 5.0

    Returns
    -------
    numpy.ndarray
        bool, shape ``pred.shape[:-2]``.
    """
    errors = keypoint_errors_mm(pred, true, pixel_spacing)
    if errors.ndim < 1 or errors.shape[-1] != 4:
        raise ValueError(f"expected (..., 4, 2) corners, got shape {np.shape(pred)}")
    return (errors <= tolerance_mm).all(-1)
