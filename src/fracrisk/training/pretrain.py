r"""Self-supervised pretraining of an image backbone on unlabelled images (SimCLR).

Real archives hold far more radiographs and CTs than patients followed up for fractures.
:func:`pretrain_backbone` trains a timm backbone (:func:`fracrisk.encoders.create_backbone`)
without any outcome: every image is augmented twice and the network learns to tell the
two views of an image from the views of the other images of the batch
(:func:`fracrisk.losses.nt_xent_loss`; Chen et al., "A simple framework for contrastive
learning of visual representations", ICML 2020), through a projection head that is thrown
away afterwards.

Each channel of an item is one image: a DRR view, or one vertebra's patch, as the encoders
see them (one-channel backbones applied per view or per vertebra). The views of an image
differ by a random crop (70-100% of the side, anywhere), a rotation of up to 10 degrees, a
contrast and brightness change (x 0.8-1.2, +- 0.2 SD) and Gaussian noise (0.05 SD), all
drawn from torch's generator reseeded from ``(seed, epoch)``, so a resumed run is
bit-identical to an uninterrupted one. No flips: left and right, anterior and posterior are
anatomy.

The trained backbone is saved with :func:`save_backbone_weights` as safetensors with timm's
tensor names, which any image model starts from with
``encoder_kwargs={"backbone": name, "backbone_kwargs": {"weights": path}}``
(:func:`fracrisk.encoders.load_local_weights`): nothing is pickled.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ContrastiveNet",
    "augment_views",
    "load_unlabelled_images",
    "pretrain_backbone",
    "save_backbone_weights",
]


class ContrastiveNet(nn.Module):
    """A backbone and the projection head of contrastive pretraining (SimCLR).

    Parameters
    ----------
    backbone : ImageBackbone
        From :func:`fracrisk.encoders.create_backbone` (one input channel).
    projection_dim : int, default 64
        Size of the projections the loss compares.
    """

    def __init__(self, backbone: nn.Module, projection_dim: int = 64) -> None:
        super().__init__()
        self.backbone = backbone
        width = backbone.num_features
        self.projection = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, projection_dim)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Projections ``(n, projection_dim)`` of ``(n, 1, H, W)`` images."""
        return self.projection(self.backbone(images))


def augment_views(images: torch.Tensor) -> torch.Tensor:
    """One random view of each ``(n, 1, H, W)`` image (see the module docstring).

    Draws from torch's global generator (seeded by the training loop).
    """
    n, _, h, w = images.shape
    dtype, device = images.dtype, images.device
    scale = torch.empty(n, device=device).uniform_(0.7, 1.0)
    angle = torch.empty(n, device=device).uniform_(-10.0, 10.0) * math.pi / 180
    shift = (torch.rand(n, 2, device=device) * 2 - 1) * (1 - scale)[:, None]
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    ).to(dtype)
    grid = F.affine_grid(theta, (n, 1, h, w), align_corners=False)
    view = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
    sd = images.flatten(1).std(dim=1).clamp_min(1e-6)[:, None, None, None]
    mean = images.flatten(1).mean(dim=1)[:, None, None, None]
    gain = torch.empty(n, 1, 1, 1, device=device).uniform_(0.8, 1.2).to(dtype)
    offset = torch.empty(n, 1, 1, 1, device=device).uniform_(-0.2, 0.2).to(dtype)
    view = mean + (view - mean) * gain + offset * sd
    return view + 0.05 * sd * torch.randn_like(view)


def load_unlabelled_images(
    paths,
    kind: str = "patches",
    *,
    size: tuple[int, int] | None = None,
    views=("frontal", "lateral", "axial"),
    cache_dir: str | os.PathLike | None = None,
    on_error: str = "raise",
    workers: int = 0,
    progress: bool = False,
) -> tuple[torch.Tensor, list[tuple[int, str, str]]]:
    """Images of files without outcomes, made as :class:`~fracrisk.data.ImageCohortDataset` does.

    Hip CTs (``kind="drr"``) become their DRR views; lateral spine radiographs
    (``"patches"``) their L1-L5 patches, at the shipped detector's corners. Prepared
    images are kept in ``cache_dir`` (the same cache layout, so a dataset with the same
    options reuses them).

    Parameters
    ----------
    paths : sequence of path-like
        The image files (a CT: NIfTI file or DICOM folder; a radiograph: PNG, TIFF, NIfTI,
        DICOM).
    kind : {"patches", "drr"}, default "patches"
    size : (int, int), optional
        Patch or DRR size; default (64, 64) for patches, (224, 224) for DRRs.
    views : sequence of str
        DRR views.
    cache_dir : path-like, optional
        Where prepared images are stored.
    on_error : {"raise", "skip"}, default "raise"
        A file that cannot be used stops (naming it and why) or is left out and listed.
    workers : int, default 0
        Worker processes.
    progress : bool, default False

    Returns
    -------
    images : torch.Tensor, shape (n_used, C, H, W)
    failures : list of (position, path, reason)
    """
    from fracrisk.imaging.pipeline import (
        PersistentPipeline,
        drr_pipeline,
        patch_pipeline,
        prepare_items,
    )
    from fracrisk.imaging.store import TensorStore, read_tensor

    if kind not in ("patches", "drr"):
        raise ValueError(f"kind must be 'patches' or 'drr', got {kind!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("no image paths given")
    size = ((64, 64) if kind == "patches" else (224, 224)) if size is None else tuple(size)
    root = None if cache_dir is None else Path(cache_dir)
    store = TensorStore(None if root is None else root / kind)
    if kind == "drr":
        views_store = TensorStore(None if root is None else root / "drr_views")
        steps = drr_pipeline(ct_spacing=1.0, views=tuple(views), size=size, view_store=views_store)
        name = "views"
    else:
        keypoints = TensorStore(None if root is None else root / "keypoints")
        steps = patch_pipeline(size=size, keypoint_store=keypoints)
        steps[0].ready()  # load the detector once, before any worker starts
        name = "patches"
    pipeline = PersistentPipeline(steps, store, name)
    items = [(i, {"path": Path(p), "source": p, "keypoints": None}) for i, p in enumerate(paths)]
    tensors: dict[int, torch.Tensor] = {}
    failures: list[tuple[int, str, str]] = []
    for result in prepare_items(pipeline, items, workers=workers, progress=progress):
        if result.error is not None:
            failures.append((result.position, paths[result.position], result.error.reason))
            if on_error == "raise":
                raise ValueError(
                    f"image {paths[result.position]!r} (position {result.position}) cannot be "
                    f"used: {result.error.reason}; pass on_error='skip' to leave it out"
                )
            continue
        tensor = result.tensor
        if tensor is None:
            tensor = read_tensor(Path(result.file), name)
        tensors[result.position] = tensor
    if not tensors:
        raise ValueError(f"none of the {len(paths)} images could be used: {failures[:3]}")
    images = torch.stack([tensors[i] for i in sorted(tensors)])
    return images, sorted(failures)


def _channels_as_images(images) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if tensor.ndim == 3:
        tensor = tensor[:, None]
    if tensor.ndim != 4 or tensor.shape[-1] < 8 or tensor.shape[-2] < 8:
        raise ValueError(
            "images must be (n, C, H, W) items (each channel one image: a view or a patch) "
            f"or (n, H, W), at least 8 x 8 pixels; got shape {tuple(tensor.shape)}"
        )
    tensor = tensor.reshape(-1, 1, *tensor.shape[-2:]).to(torch.float32).contiguous()
    if len(tensor) < 4:
        raise ValueError(f"pretraining needs at least 4 images, got {len(tensor)}")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError("images hold NaN or infinite values")
    return tensor


def _lightning_classes() -> dict[str, type]:
    """The Lightning classes of pretraining, defined on first use (Lightning imports slowly)."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    from fracrisk.losses import nt_xent_loss
    from fracrisk.training.module import adamw_with_schedule, epoch_seed
    from fracrisk.training.sampler import EventStratifiedBatchSampler

    class ContrastiveLightningModule(pl.LightningModule):
        """NT-Xent loss of two augmented views of every image of a batch."""

        def __init__(self, network: ContrastiveNet, config, steps_per_epoch: int, temperature):
            super().__init__()
            self.network, self.config = network, config
            self.steps_per_epoch = max(int(steps_per_epoch), 1)
            self.temperature = float(temperature)
            self._train_sum, self._train_n = 0.0, 0

        def on_train_epoch_start(self) -> None:
            """Reseed the views from (seed, epoch); point the sampler at the epoch."""
            epoch = self.current_epoch
            torch.manual_seed(epoch_seed(self.config.seed, epoch))
            sampler = getattr(self.trainer.train_dataloader, "batch_sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            self._train_sum, self._train_n = 0.0, 0

        def training_step(self, batch, batch_idx: int) -> torch.Tensor:
            """Loss of one batch: each view must find its partner."""
            (images,) = batch
            z1 = self.network(augment_views(images))
            z2 = self.network(augment_views(images))
            loss = nt_xent_loss(z1, z2, self.temperature)
            self._train_sum += float(loss.detach()) * len(images)
            self._train_n += len(images)
            return loss

        def epoch_train_loss(self) -> float:
            """Mean loss per image over the epoch so far."""
            return self._train_sum / max(self._train_n, 1)

        def on_train_epoch_end(self) -> None:
            """Log the epoch's mean training loss."""
            self.log("train_loss", self.epoch_train_loss(), prog_bar=True, sync_dist=False)

        def configure_optimizers(self):
            """AdamW, with the configured schedule."""
            return adamw_with_schedule(self.network.parameters(), self.config, self.steps_per_epoch)

    class ContrastiveDataModule(pl.LightningDataModule):
        """Shuffled global batches of images, dealt out to the ranks."""

        def __init__(self, images: torch.Tensor, config) -> None:
            super().__init__()
            self.images, self.config = images, config

        def train_dataloader(self) -> DataLoader:
            """The loader of this rank's part of every shuffled global batch."""
            sampler = EventStratifiedBatchSampler(
                np.zeros(len(self.images), dtype=bool),
                self.config.batch_size,
                seed=self.config.seed,
                rank=self.trainer.global_rank,
                world_size=self.trainer.world_size,
            )
            return DataLoader(
                TensorDataset(self.images),
                batch_sampler=sampler,
                num_workers=self.config.num_workers,
                persistent_workers=self.config.num_workers > 0,
            )

    classes = {
        "ContrastiveDataModule": ContrastiveDataModule,
        "ContrastiveLightningModule": ContrastiveLightningModule,
    }
    for cls in classes.values():  # importable (and picklable) as fracrisk.training.pretrain.X
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    return classes


def __getattr__(name: str):
    if name in ("ContrastiveDataModule", "ContrastiveLightningModule"):
        return _lightning_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def pretrain_backbone(
    images,
    *,
    backbone: str = "resnet10t",
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    temperature: float = 0.2,
    projection_dim: int = 64,
    seed: int = 0,
    accelerator: str = "auto",
    precision: str | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = False,
    history: list | None = None,
):
    r"""Train a backbone on unlabelled images by contrastive learning (SimCLR).

    Parameters
    ----------
    images : torch.Tensor or numpy.ndarray, shape (n, C, H, W) or (n, H, W)
        Items as the datasets give them (DRR views or L1-L5 patches); every channel is
        one image.
    backbone : str, default "resnet10t"
        timm model name (:func:`fracrisk.encoders.create_backbone`, one channel, random
        initialisation).
    epochs, batch_size, learning_rate : int, int, float
        Passes over the images, images per global batch (each the others' negatives) and
        the AdamW step size.
    temperature : float, default 0.2
        :math:`\tau` of :func:`fracrisk.losses.nt_xent_loss`.
    projection_dim : int, default 64
        Output size of the projection head (discarded after training).
    seed : int, default 0
        Seeds initialisation, shuffles and views from (seed, epoch) alone.
    accelerator, precision, checkpoint_dir, resume, progress
        The training run, as for the image models (Lightning's devices; ``last.ckpt``
        written atomically every epoch; ``resume`` continues it bit-identically).
    history : list, optional
        Appended with the mean loss of every epoch.

    Returns
    -------
    ImageBackbone
        The trained backbone, in eval mode, on the CPU.
    """
    from fracrisk.encoders import create_backbone
    from fracrisk.training.config import TrainingConfig
    from fracrisk.training.engine import fit_lightning

    data = _channels_as_images(images)
    for name, value, low in (("epochs", epochs, 1), ("batch_size", batch_size, 2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (temperature > 0 and learning_rate > 0):
        raise ValueError("temperature and learning_rate must be > 0")
    batch_size = int(min(batch_size, len(data)))
    config = TrainingConfig(
        learning_rate=float(learning_rate),
        batch_size=batch_size,
        max_epochs=int(epochs),
        early_stopping=None,
        accelerator=accelerator,
        precision=precision,
        checkpoint_dir=checkpoint_dir,
        logger="csv" if checkpoint_dir is not None else None,
        seed=int(seed),
        progress=progress,
    )
    classes = _lightning_classes()
    steps = math.ceil(len(data) / batch_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        network = ContrastiveNet(create_backbone(backbone, in_chans=1), projection_dim)
        module = classes["ContrastiveLightningModule"](network, config, steps, temperature)
        result = fit_lightning(
            module,
            classes["ContrastiveDataModule"](data, config),
            config,
            has_validation=False,
            steps_per_epoch=steps,
            resume=resume,
        )
    if history is not None:
        history.extend(result.history.train_loss)
    return network.backbone.eval()


def save_backbone_weights(backbone, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a backbone's timm weights as safetensors, atomically; returns the path.

    The file holds timm's tensor names, for ``backbone_kwargs={"weights": path}``.
    """
    from safetensors.torch import save_file

    from fracrisk._io import atomic_path

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(
            f"weights are written as safetensors: name the file *.safetensors, got {path}"
        )
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{str(path)!r} exists; pass overwrite=True (--overwrite) to replace it"
        )
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"fracrisk": "pretrain", "backbone": backbone.name})
    return path
