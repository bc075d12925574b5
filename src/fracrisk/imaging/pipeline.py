r"""The deterministic image pipeline: dictionary transforms, cached up to the first random one.

An **item** is a dictionary about one patient's image. It starts with

* ``"path"`` (:class:`pathlib.Path`, resolved) and ``"source"`` (the path as given, for
  messages);
* ``"identity"``: the file's :func:`~fracrisk.imaging.store.file_identity` (computed by
  :meth:`PersistentPipeline.prepare` when absent, by ``"identity_mode"``: ``"content"``
  or ``"stat"``);
* ``"keypoints"``: float64 ``(5, 4, 2)`` corners given by the table, or None;

and each step reads some keys and writes others, MONAI-style (settings in ``__init__``, the
item in ``__call__``):

================================  ==========================  =======================
step                              reads                       writes
================================  ==========================  =======================
:class:`LoadCTd`                  ``path``                    ``ct`` (CTVolume)
:class:`RenderDRRd`               ``path``                    ``image`` (V, H, W)
:class:`ResizeVolumed`            ``ct``                      ``image`` (1, D, H, W)
:class:`DetectKeypointsd`         ``path``, ``keypoints``     ``keypoints``
:class:`LoadRadiographd`          ``path``                    ``radiograph``
:class:`NormaliseRadiographd`     ``radiograph``              ``radiograph``
:class:`CutVertebralPatchesd`     ``radiograph``,             ``image`` (5, h, w)
                                  ``keypoints``
================================  ==========================  =======================

:func:`drr_pipeline`, :func:`patch_pipeline` and :func:`volume_pipeline` chain them for
the three image kinds.

Caching (MONAI ``PersistentDataset`` semantics)
-----------------------------------------------
:class:`PersistentPipeline` runs the steps before the first random transform once per
item and stores their output, ``image``, in a :class:`~fracrisk.imaging.store.TensorStore`.
The entry's key is computed **before** anything is read: the file identity plus each
step's :meth:`MapTransform.key_parts` (its options and, per item, what the table gave it,
such as the keypoints). A warm store therefore reads no image. The random tail
(augmentation, :mod:`fracrisk.imaging.transforms`) is applied to the cached tensor each
time an item is read (:meth:`PersistentPipeline.augment`). Steps that are expensive on their
own can keep their own store too: the keypoint detector's corners are cached apart from
the patches, so changing the patch size does not run the detector again, and each DRR view
is cached apart from the others, so a dataset of one view after one of three reads no CT.

Counts
------
Every step that does work adds one to ``item["counts"][step.counter]`` (``loaded``,
``rendered``, ``detected``, ``cut``); the pipeline adds ``from_cache`` for a stored hit.

Errors
------
A step that cannot use an item raises :class:`StepError` naming the item key at fault
(``"path"``: the image; ``"keypoints"``: the corners) and the reason. The pipeline never
decides what a failure means for a cohort: that is the dataset's policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import fracrisk.imaging.io as _io
from fracrisk.imaging.drr import render_drr
from fracrisk.imaging.geometry import resolve_geometry
from fracrisk.imaging.io import ImageReadError
from fracrisk.imaging.patches import vertebral_patches
from fracrisk.imaging.store import (
    TensorStore,
    content_key,
    file_identity,
    json_plain,
    model_digest,
)

__all__ = [
    "CutVertebralPatchesd",
    "DetectKeypointsd",
    "LoadCTd",
    "LoadRadiographd",
    "MapTransform",
    "NormaliseRadiographd",
    "PersistentPipeline",
    "Prepared",
    "RenderDRRd",
    "ResizeVolumed",
    "StepError",
    "apply_transform",
    "drr_pipeline",
    "patch_pipeline",
    "render_key_options",
    "volume_pipeline",
]

RADIOGRAPH_NORMALISATIONS = ("zscore", None)


class StepError(Exception):
    """A step cannot use an item: the item key at fault (``"path"``, ``"keypoints"``) and why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason

    def __reduce__(self):
        return (type(self), (self.key, self.reason))  # crosses worker processes intact


class MapTransform:
    """A deterministic step on an item dictionary.

    Subclasses set :attr:`counter` (the ``counts`` entry their work adds to, or None) and
    implement ``__call__(item) -> item``. :meth:`key_parts` returns what decides the step's
    output beyond its inputs, as JSON values: it enters the cache key of every step after.
    """

    counter: str | None = None
    is_random = False

    def key_options(self) -> dict:
        """The settings that change the output (plain JSON)."""
        return {}

    def key_parts(self, item: dict) -> dict:
        """What decides this step's output for ``item``: by default its settings."""
        return self.key_options()

    def _count(self, item: dict) -> None:
        if self.counter is not None:
            counts = item.setdefault("counts", {})
            counts[self.counter] = counts.get(self.counter, 0) + 1

    def __call__(self, item: dict) -> dict:  # pragma: no cover - abstract
        """Run the step on ``item`` (see the class docstring); returns the item."""
        raise NotImplementedError

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.key_options().items())
        return f"{type(self).__name__}({options})"


# ------------------------------------------------------------------------------- hip CT


class LoadCTd(MapTransform):
    """``path`` -> ``ct``: the CT in HU on canonical axes, resampled (:func:`~.io.load_ct`).

    Parameters
    ----------
    spacing : float or None, default 1.0
        Isotropic voxel size (mm) to resample to; None keeps the file's grid.
    """

    counter = "loaded"

    def __init__(self, spacing: float | None = 1.0) -> None:
        self.spacing = spacing

    def key_options(self) -> dict:
        """The settings that change the output (plain JSON)."""
        return {"ct_spacing": self.spacing}

    def __call__(self, item: dict) -> dict:
        """Run the step on ``item`` (see the class docstring); returns the item."""
        item["ct"] = _io.load_ct(item["path"], spacing=self.spacing)
        self._count(item)
        return item


def render_key_options(options: dict) -> dict:
    """Render options as JSON, the geometry (default parallel) in one canonical form.

    A name, an object and its dict, or no geometry at all for the default, render the same
    images, so they share a key (as in :func:`~fracrisk.imaging.drr_cache_key`).
    """
    plain = dict(options)
    plain["geometry"] = resolve_geometry(plain.get("geometry", "parallel")).to_dict()
    return json_plain(plain)


class RenderDRRd(MapTransform):
    """``path`` -> ``image``: float32 ``(V, H, W)`` DRR views of the CT (:func:`~.render_drr`).

    Each view is rendered on its own (:func:`~fracrisk.imaging.render_drr` projects the
    views independently), so each can be kept on its own: with a ``store`` on disk, a view
    found there is read back, and the CT is read (:func:`~.io.load_ct`) only when a view is
    missing. A dataset of one view after a dataset of all three (Kim's single-view
    ablations) then reads no CT. Reading a CT costs about ten times rendering it.

    Parameters
    ----------
    views : sequence of str
        Views in channel order (``"frontal"``, ``"lateral"``, ``"axial"``).
    size : (int, int)
        Output ``(H, W)`` in pixels.
    window : (float, float) or None
        Line-integral window mapped to [0, 1]; None keeps physical line integrals.
    render_options : dict, optional
        Further :func:`~fracrisk.imaging.render_drr` arguments (the beam geometry, ...).
    ct_spacing : float or None, default 1.0
        Isotropic voxel size (mm) the CT is resampled to before rendering; None keeps the
        file's grid.
    store : TensorStore, optional
        Where single views are kept, keyed by the file identity, the view and every option
        above. Default: none (every view is rendered).
    """

    counter = "rendered"

    def __init__(
        self,
        views,
        size,
        window=None,
        render_options: dict | None = None,
        *,
        ct_spacing: float | None = 1.0,
        store: TensorStore | None = None,
    ) -> None:
        self.views = tuple(views)
        self.size = tuple(size)
        self.window = window
        self.render_options = dict(render_options or {})
        self.ct_spacing = ct_spacing
        self.store = store

    def _options(self) -> dict:
        return {"size": self.size, "window": self.window, **self.render_options}

    def key_options(self) -> dict:
        """The settings that change the output (plain JSON)."""
        render = render_key_options({"views": self.views, **self._options()})
        return {"ct_spacing": self.ct_spacing, "render": render}

    def view_key(self, item: dict, view: str) -> str:
        """The store key of one view of ``item``'s CT (needs ``item["identity"]``)."""
        return content_key(
            "drr_view",
            file=item["identity"],
            view=view,
            ct_spacing=self.ct_spacing,
            render=render_key_options(self._options()),
        )

    def __call__(self, item: dict) -> dict:
        """Run the step on ``item`` (see the class docstring); returns the item."""
        store = self.store if self.store is not None and self.store.on_disk else None
        found: dict[str, torch.Tensor] = {}
        if store is not None:
            if "identity" not in item:
                item["identity"] = file_identity(
                    item["path"],
                    item.get("source", str(item["path"])),
                    item.get("identity_mode", "content"),
                )
            for view in self.views:
                cached = store.get(self.view_key(item, view), "view", shape=self.size)
                if cached is not None:
                    found[view] = cached
        missing = [view for view in self.views if view not in found]
        if missing:
            ct = _io.load_ct(item["path"], spacing=self.ct_spacing)
            counts = item.setdefault("counts", {})
            counts["loaded"] = counts.get("loaded", 0) + 1
            images = render_drr(ct.volume_hu, ct.spacing, views=missing, **self._options())
            images = images.detach().cpu().to(torch.float32)
            for view, image in zip(missing, images, strict=True):
                found[view] = image.contiguous()
                if store is not None:
                    store.put(self.view_key(item, view), "view", found[view])
            self._count(item)
        item["image"] = torch.stack([found[view] for view in self.views]).contiguous()
        return item


class ResizeVolumed(MapTransform):
    r"""``ct`` -> ``image``: float32 ``(1, D, H, W)``, the CT's field of view on a small grid.

    The whole volume (after :class:`LoadCTd`) is resized to ``size`` voxels: by averaging
    the voxels that fall in each output voxel when shrinking (adaptive average pooling: the
    mean density of each block survives, fine texture does not), trilinearly when growing.
    Intensities, for a voxel of mean :math:`h` HU:

    .. math::
        x = h / 1000 \quad (\text{window None}), \qquad
        x = \operatorname{clip}\!\left(\frac{h - lo}{hi - lo}, 0, 1\right)
        \quad (\text{window } (lo, hi)).

    The default keeps absolute density (the bone-density signal), as the DRRs' physical
    line integrals do.

    Parameters
    ----------
    size : (int, int, int)
        Output ``(D, H, W)`` voxels along the CT's ``(z, y, x)`` axes (z inferior to
        superior).
    window : (float, float) or None
        HU window mapped to [0, 1] and clipped; None: HU / 1000, unclipped.
    """

    counter = "rendered"

    def __init__(self, size, window=None) -> None:
        self.size = tuple(int(n) for n in size)
        self.window = None if window is None else tuple(float(v) for v in window)

    def key_options(self) -> dict:
        """The settings that change the output (plain JSON)."""
        return {"volume_size": list(self.size), "hu_window": self.window}

    def __call__(self, item: dict) -> dict:
        """Run the step on ``item`` (see the class docstring); returns the item."""
        ct = item.pop("ct")
        volume = torch.from_numpy(np.asarray(ct.volume_hu, dtype=np.float32))[None, None]
        if all(n <= m for n, m in zip(self.size, volume.shape[2:], strict=True)):
            volume = torch.nn.functional.adaptive_avg_pool3d(volume, self.size)
        else:
            volume = torch.nn.functional.interpolate(
                volume, size=self.size, mode="trilinear", align_corners=False
            )
        if self.window is None:
            volume = volume / 1000.0
        else:
            lo, hi = self.window
            volume = ((volume - lo) / (hi - lo)).clamp(0.0, 1.0)
        item["image"] = volume[0].contiguous()
        self._count(item)
        return item


# ------------------------------------------------------------------------- spine X-ray


class LoadRadiographd(MapTransform):
    """``path`` -> ``radiograph``: float pixels (:func:`~fracrisk.imaging.load_radiograph`).

    An item whose radiograph an earlier step already read (the keypoint detector) is left
    as it is: the file is read at most once.
    """

    counter = "loaded"

    def __call__(self, item: dict) -> dict:
        """Run the step on ``item`` (see the class docstring); returns the item."""
        if item.get("radiograph") is None:
            item["radiograph"] = _io.load_radiograph(item["path"]).image
            self._count(item)
        return item


class DetectKeypointsd(MapTransform):
    """``keypoints``: the table's corners, else the detector's (cached apart, by file and weights).

    Parameters
    ----------
    detector : KeypointNet, path-like or None
        The model (or a file for :func:`~fracrisk.imaging.load_keypoint_detector`); None,
        the shipped one. Loaded on first use, once per process.
    store : TensorStore, optional
        Where detected corners are kept, keyed by the file identity and the detector's
        weights. Default: in memory.
    """

    counter = "detected"

    def __init__(self, detector=None, store: TensorStore | None = None) -> None:
        self.detector = detector
        self.store = TensorStore(None) if store is None else store
        self._model = None
        self._digest: str | None = None

    def ready(self) -> tuple[Any, str]:
        """The detector and the digest of its weights (loaded and hashed once)."""
        import fracrisk.imaging.keypoints as _keypoints

        if self._model is None:
            spec = self.detector
            if isinstance(spec, _keypoints.KeypointNet):
                self._model = spec
            else:
                self._model = _keypoints.load_keypoint_detector(spec)
        if self._digest is None:
            self._digest = model_digest(self._model)
        return self._model, self._digest

    def key_parts(self, item: dict) -> dict:
        """The table's corners, else the detector's weights: what decides the corners."""
        given = item.get("keypoints")
        if given is not None:
            return {"keypoints": np.asarray(given).reshape(-1).tolist()}
        return {"detector": self.ready()[1]}

    def __call__(self, item: dict) -> dict:
        """Run the step on ``item`` (see the class docstring); returns the item."""
        if item.get("keypoints") is not None:
            item["keypoints_from"] = "table"
            return item
        import fracrisk.imaging.keypoints as _keypoints

        model, digest = self.ready()
        key = content_key("keypoints", file=item["identity"], detector=digest)
        cached = self.store.get(key, "keypoints")
        if cached is not None:
            item["keypoints"] = cached.numpy().astype(np.float64)
        else:
            if item.get("radiograph") is None:
                item["radiograph"] = _io.load_radiograph(item["path"]).image
                item.setdefault("counts", {})
                item["counts"]["loaded"] = item["counts"].get("loaded", 0) + 1
            try:
                found = _keypoints.detect_keypoints(model, item["radiograph"])
            except ValueError as err:
                raise StepError("path", f"keypoint detection failed: {err}") from err
            item["keypoints"] = np.asarray(found, dtype=np.float64)
            self._count(item)
            self.store.put(key, "keypoints", torch.from_numpy(item["keypoints"]))
        item["keypoints_from"] = "detector"
        return item

    def __getstate__(self) -> dict:
        import fracrisk.imaging.keypoints as _keypoints

        state = dict(self.__dict__)
        if not isinstance(self.detector, _keypoints.KeypointNet):
            state["_model"] = None  # loaded again from its file where needed
        return state


class NormaliseRadiographd(MapTransform):
    """``radiograph`` standardised over the whole image (``"zscore"``), or left raw (None).

    Radiograph intensities are not calibrated between devices; a z-score keeps the contrast
    between the vertebrae and their surroundings.
    """

    def __init__(self, mode: str | None = "zscore") -> None:
        if mode not in RADIOGRAPH_NORMALISATIONS:
            raise ValueError(f"radiograph_normalisation must be 'zscore' or None, got {mode!r}")
        self.mode = mode

    def key_options(self) -> dict:
        """The settings that change the output (plain JSON)."""
        return {"normalisation": self.mode}

    def __call__(self, item: dict) -> dict:
        """Run the step on ``item`` (see the class docstring); returns the item."""
        if self.mode == "zscore":
            values = np.asarray(item["radiograph"], dtype=np.float64)
            std = float(values.std())
            if not std > 0:
                raise StepError("path", "the radiograph is constant (zero variance)")
            item["radiograph"] = ((values - values.mean()) / std).astype(np.float32)
        return item


class CutVertebralPatchesd(MapTransform):
    """``radiograph``, ``keypoints`` -> ``image``: float32 L1-L5 patches ``(5, h, w)``.

    Parameters
    ----------
    size : (int, int)
        Patch ``(h, w)`` in pixels.
    margin : float
        Margin around each vertebral body, as a fraction of its size.
    mapping : {"affine", "similarity", "homography"}
        Body-frame -> image map (:func:`~fracrisk.imaging.vertebral_patches`).
    """

    counter = "cut"

    def __init__(self, size, margin: float = 0.15, mapping: str = "affine") -> None:
        self.size = tuple(size)
        self.margin = float(margin)
        self.mapping = mapping

    def key_options(self) -> dict:
        """The settings that change the output (plain JSON)."""
        return {"size": list(self.size), "margin": self.margin, "mapping": self.mapping}

    def __call__(self, item: dict) -> dict:
        """Run the step on ``item`` (see the class docstring); returns the item."""
        try:
            patches = vertebral_patches(
                item.pop("radiograph"),
                item["keypoints"],
                size=self.size,
                margin=self.margin,
                transform=self.mapping,
            )[:, 0]
        except ValueError as err:
            raise StepError("keypoints", f"keypoints unusable for patches: {err}") from err
        item["image"] = patches.to(torch.float32).contiguous()
        self._count(item)
        return item


# ----------------------------------------------------------------------------- pipeline


@dataclass
class Prepared:
    """What preparing one item gave (also returned from worker processes)."""

    position: int
    file: str | None = None  # store file holding the tensor (disk store)
    tensor: torch.Tensor | None = None  # the tensor itself (memory store)
    error: StepError | None = None
    counts: dict = field(default_factory=dict)
    keypoints_from: str | None = None


class PersistentPipeline:
    """Deterministic steps cached in a store, then a random tail applied at every read.

    Parameters
    ----------
    steps : sequence of callables
        Dictionary transforms. Those before the first one with ``is_random`` true are the
        cached head; the rest must be tensor transforms (the augmentation tail).
    store : TensorStore
        Where the head's output ``image`` is kept (disk: shared by runs and processes).
    name : str
        The output's name in the store (``"views"``, ``"patches"``).
    """

    def __init__(self, steps: Sequence[Callable], store: TensorStore, name: str) -> None:
        steps = list(steps)
        cut = next((i for i, s in enumerate(steps) if getattr(s, "is_random", False)), len(steps))
        self.head: list[MapTransform] = steps[:cut]
        self.tail: list[Callable] = steps[cut:]
        self.store = store
        self.name = name

    def key(self, item: dict) -> str:
        """The store key of ``item``'s head output, computed without reading the image."""
        parts = [[type(s).__name__, s.key_parts(item)] for s in self.head]
        return content_key(self.name, file=item["identity"], steps=parts)

    def prepare(self, position: int, item: dict) -> Prepared:
        """Store ``item``'s head output (once); step errors are returned, never raised."""
        counts = item.setdefault("counts", {})
        try:
            if "identity" not in item:
                item["identity"] = file_identity(
                    item["path"],
                    item.get("source", str(item["path"])),
                    item.get("identity_mode", "content"),
                )
            key = self.key(item)
            if self.store.on_disk and self.store.has(key):
                counts["from_cache"] = counts.get("from_cache", 0) + 1
                return Prepared(position, file=str(self.store.path_for(key)), counts=counts)
            for step in self.head:
                item = step(item)
        except StepError as err:
            return Prepared(position, error=err, counts=counts)
        except ImageReadError as err:
            return Prepared(position, error=StepError("path", err.reason), counts=counts)
        image = item["image"]
        if not self.store.on_disk:
            return Prepared(
                position, tensor=image, counts=counts, keypoints_from=item.get("keypoints_from")
            )
        file = self.store.put(key, self.name, image)
        return Prepared(
            position, file=str(file), counts=counts, keypoints_from=item.get("keypoints_from")
        )

    def augment(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Apply the random tail to a cached ``image`` (see :func:`apply_transform`)."""
        for transform in self.tail:
            image = apply_transform(transform, image, generator)
        return image

    def __repr__(self) -> str:
        head = ", ".join(map(repr, self.head))
        return f"PersistentPipeline([{head}] | {len(self.tail)} random, name={self.name!r})"


def apply_transform(
    transform: Callable, image: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """``transform(image)``; fracrisk's random transforms also get ``generator``."""
    from fracrisk.imaging.transforms import Compose, RandomTransform

    if isinstance(transform, (Compose, RandomTransform)):
        return transform(image, generator=generator if transform.is_random else None)
    return transform(image)


def drr_pipeline(
    *,
    ct_spacing,
    views,
    size,
    window=None,
    render_options=None,
    view_store: TensorStore | None = None,
) -> list[MapTransform]:
    """Hip CT steps: :class:`RenderDRRd`, which reads the CT for the views ``view_store`` lacks."""
    return [
        RenderDRRd(views, size, window, render_options, ct_spacing=ct_spacing, store=view_store)
    ]


def volume_pipeline(*, ct_spacing, size, window=None) -> list[MapTransform]:
    """Hip CT steps for a 3-D CNN: :class:`LoadCTd` then :class:`ResizeVolumed`."""
    return [LoadCTd(ct_spacing), ResizeVolumed(size, window)]


def patch_pipeline(
    *,
    size,
    margin=0.15,
    mapping="affine",
    normalisation="zscore",
    detector=None,
    keypoint_store: TensorStore | None = None,
) -> list[MapTransform]:
    """Spine X-ray steps: keypoints (table or detector), load, normalise, cut L1-L5."""
    return [
        DetectKeypointsd(detector, keypoint_store),
        LoadRadiographd(),
        NormaliseRadiographd(normalisation),
        CutVertebralPatchesd(size, margin, mapping),
    ]


def prepare_items(
    pipeline: PersistentPipeline,
    items: Sequence[tuple[int, dict]],
    *,
    workers: int = 0,
    progress: bool = False,
    desc: str = "preparing",
) -> Iterator[Prepared]:
    """Prepare ``(position, item)`` pairs in this process or in ``workers`` processes."""
    if workers > 0 and len(items) > 1:
        from torch.utils.data import DataLoader

        loader = DataLoader(
            _ItemPreparer(pipeline, items),
            batch_size=None,
            num_workers=min(workers, len(items)),
            collate_fn=_identity,
        )
        results: Iterator[Prepared] = iter(loader)
    else:
        results = (pipeline.prepare(p, item) for p, item in items)
    if progress:
        from tqdm.auto import tqdm

        results = tqdm(results, total=len(items), desc=desc, unit="image", disable=None)
    return results


def _identity(value):
    return value


class _ItemPreparer(torch.utils.data.Dataset):
    """Items to prepare, as a dataset, so that DataLoader workers can share the work."""

    def __init__(self, pipeline: PersistentPipeline, items: Sequence[tuple[int, dict]]) -> None:
        self.pipeline = pipeline
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Prepared:
        position, item = self.items[i]
        return self.pipeline.prepare(position, dict(item))


def resolve_path(source: str, root: Path | None) -> Path:
    """``source`` as a path, relative ones taken from ``root`` (when given)."""
    path = Path(source)
    if root is not None and not path.is_absolute():
        path = root / path
    return path
