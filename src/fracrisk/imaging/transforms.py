r"""Augmentation and normalisation of image tensors, safe for survival models.

MONAI-style array transforms: settings go to ``__init__``, the image to ``__call__``, and
:class:`Compose` chains them. Every transform takes a ``torch.Tensor`` (or a NumPy array
for :class:`EnsureFloat32`) of shape ``(..., H, W)`` -- in fracrisk a multi-view DRR stack
``(V, H, W)`` (frontal, lateral, axial) or the five vertebral patches ``(5, h, w)`` -- and
returns a tensor of the same shape. Leading dimensions ride along as channels: a random
transform draws **one** set of parameters per call and applies it to every channel, so the
views (or vertebrae) of one patient stay consistent with each other.

Randomness
----------
Random transforms (:class:`RandomTransform` subclasses) draw from, in this order of
precedence:

1. the ``generator`` passed to ``__call__`` (``Compose`` passes its own to every member);
   :class:`fracrisk.data.ImageCohortDataset` passes one seeded per item, so that an item's
   augmentation does not depend on the DataLoader's workers;
2. the transform's own generator, seeded by its ``seed`` argument (or
   :meth:`RandomTransform.set_random_state`);
3. torch's global generator (``seed=None``), which ``torch.manual_seed`` and the DataLoader's
   per-worker seeding control.

The survival-safe policy
------------------------
A fracture-risk model must not be taught that a patient's anatomy could be other than it
is. The defaults (:func:`default_train_transform`) therefore use

* **small rotations** (a few degrees, about the image centre): positioning varies that much
  between acquisitions, and the anatomy is unchanged;
* **small intensity jitter** (gain, offset and gamma): exposure and reconstruction differ
  between scanners. On DRRs the jitter is kept small (3% gain), because absolute attenuation
  carries the bone-density signal (one T-score SD is about 12% of femoral-neck BMD);
* optional **Gaussian noise** (on by default for the radiograph patches only);
* **no left-right flips**. Image columns are the patient's right -> left axis on frontal and
  axial DRRs and the anterior -> posterior axis on lateral DRRs and vertebral patches. A
  mirrored hip is the other hip: the side of a hip is a covariate-like fact (after a first
  hip fracture the contralateral hip is the one at risk), and a mirrored vertebra puts an
  anterior wedge posteriorly, which is not the same deformity. :class:`RandFlip` refuses
  column flips unless ``allow_laterality_change=True`` is passed explicitly.

Conventions
-----------
A positive rotation angle turns the image **clockwise as displayed** (rows running down),
MONAI's convention; rotating by exactly 0 degrees returns the input unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch

__all__ = [
    "IMAGE_KINDS",
    "Compose",
    "EnsureFloat32",
    "MaskVertebralBody",
    "RandFlip",
    "RandGaussianNoise",
    "RandIntensityJitter",
    "RandRotate",
    "RandomTransform",
    "Rotate",
    "ScaleIntensityRange",
    "Transform",
    "default_eval_transform",
    "default_train_transform",
]

#: The image kinds of :class:`fracrisk.data.ImageCohortDataset`: multi-view DRRs of a hip CT
#: ``(V, H, W)``, L1-L5 vertebral patches of a lateral spine radiograph ``(5, h, w)``, and
#: the hip CT itself resized to a small grid ``(1, D, H, W)`` (for 3-D CNNs).
IMAGE_KINDS: tuple[str, ...] = ("drr", "patches", "volume")

_PADDING_MODES = ("zeros", "border", "reflection")
_INTERPOLATIONS = ("bilinear", "nearest")


# ------------------------------------------------------------------------------ helpers


def _check_image(image) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise TypeError(
            f"image must be a torch.Tensor of shape (..., H, W), got {type(image).__name__}; "
            "put EnsureFloat32() first to convert arrays"
        )
    if image.ndim < 2 or min(image.shape[-2:]) < 1:
        raise ValueError(f"image must have shape (..., H, W), got {tuple(image.shape)}")
    return image


def _plain_tensor(value) -> torch.Tensor:
    """A MONAI MetaTensor (or any tensor subclass) as a plain tensor."""
    return value.as_tensor() if hasattr(value, "as_tensor") else torch.as_tensor(value)


def _check_number(name: str, value, *, low: float, high: float | None = None, open_high=False):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )
    number = float(value) if ok else math.nan
    ok = ok and math.isfinite(number) and number >= low
    if ok and high is not None:
        ok = number < high if open_high else number <= high
    if not ok:
        bound = "" if high is None else f" and {'<' if open_high else '<='} {high}"
        raise ValueError(f"{name} must be a finite number >= {low}{bound}, got {value!r}")
    return number


def _check_choice(name: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def _check_seed(seed) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be None or a non-negative integer, got {seed!r}")
    return int(seed)


def _check_kind(kind) -> str:
    return _check_choice("kind", kind, IMAGE_KINDS)


# ------------------------------------------------------------------------------ bases


class Transform:
    """A deterministic array transform: settings in ``__init__``, the image in ``__call__``.

    Subclasses implement ``__call__(image) -> image`` for ``(..., H, W)`` tensors.
    """

    #: Whether the transform draws random numbers.
    is_random: bool = False

    def __call__(self, image: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Transform ``image`` ``(..., H, W)``; returns a tensor of the same shape."""
        raise NotImplementedError

    def _settings(self) -> dict:
        """Transform ``image`` ``(..., H, W)``; returns a tensor of the same shape."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        return f"{type(self).__name__}({args})"


class RandomTransform(Transform):
    """Base of the random transforms: applied with probability ``prob``, seeded draws.

    Parameters
    ----------
    prob : float, default 1.0
        Probability in [0, 1] of applying the transform to an image (one draw per call).
    seed : int, optional
        Seeds the transform's own :class:`torch.Generator`. ``None``: torch's global
        generator. A generator passed to ``__call__`` takes precedence over both.
    """

    is_random = True

    def __init__(self, prob: float = 1.0, *, seed: int | None = None) -> None:
        self.prob = _check_number("prob", prob, low=0.0, high=1.0)
        self.seed = _check_seed(seed)
        self._generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)

    def set_random_state(self, seed: int | None) -> RandomTransform:
        """Re-seed the transform's own generator (``None``: use torch's global one)."""
        self.seed = _check_seed(seed)
        self._generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        return self

    def _rng(self, generator: torch.Generator | None) -> torch.Generator | None:
        return generator if generator is not None else self._generator

    @staticmethod
    def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
        """One draw from U(low, high) (float64)."""
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        return low + (high - low) * u

    def _applies(self, generator: torch.Generator | None) -> bool:
        """The coin flip: True with probability ``prob`` (always one draw)."""
        return float(torch.rand((), generator=generator, dtype=torch.float64)) < self.prob

    def __call__(
        self, image: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:  # pragma: no cover - abstract
        """Transform ``image`` ``(..., H, W)``, drawing from ``generator`` (see the module)."""
        raise NotImplementedError


class Compose(Transform):
    """Apply transforms in order; random members share the generator given to ``__call__``.

    Parameters
    ----------
    transforms : iterable of callables
        :class:`Transform` objects, or any callable taking and returning an image (e.g. a
        MONAI array transform; it then uses its own random state).

    Examples
    --------
    >>> t = Compose([EnsureFloat32(), RandIntensityJitter(scale=0.1, shift=0.0, gamma=0.0)])
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.ones(2, 4, 4)
    >>> bool(torch.equal(t(x, generator=g), t(x, generator=torch.Generator().manual_seed(0))))
    True
    """

    def __init__(self, transforms: Iterable) -> None:
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"transforms[{i}] is not callable: {t!r}")

    @property
    def is_random(self) -> bool:  # type: ignore[override]
        """True when any member is random (ours, or another callable with ``is_random``)."""
        return any(getattr(t, "is_random", False) for t in self.transforms)

    def set_random_state(self, seed: int | None) -> Compose:
        """Seed every random member from ``seed`` (distinct streams), or unseed them all."""
        seed = _check_seed(seed)
        randoms = [t for t in self.transforms if isinstance(t, (RandomTransform, Compose))]
        if seed is None:
            for t in randoms:
                t.set_random_state(None)
            return self
        children = np.random.SeedSequence(seed).spawn(len(randoms))
        for t, child in zip(randoms, children, strict=True):
            t.set_random_state(int(child.generate_state(1, np.uint32)[0]))
        return self

    def __call__(self, image, generator: torch.Generator | None = None):
        """Transform ``image`` ``(..., H, W)``, drawing from ``generator`` (see the module)."""
        for t in self.transforms:
            if isinstance(t, (RandomTransform, Compose)):
                image = t(image, generator=generator)
            else:
                image = t(image)
        return image

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, index: int):
        return self.transforms[index]

    def __repr__(self) -> str:
        inner = ",\n".join(f"    {t!r}" for t in self.transforms)
        return f"Compose([\n{inner}\n])" if self.transforms else "Compose([])"


# ------------------------------------------------------------------------ deterministic


class EnsureFloat32(Transform):
    """Convert to a contiguous float32 tensor of shape ``(..., H, W)`` and check it is finite.

    Accepts NumPy arrays and tensors of any real dtype (the device of a tensor is kept). A
    non-finite value raises a :class:`ValueError` with the count, so a corrupt cached image
    never reaches the network.

    Examples
    --------
    >>> EnsureFloat32()(np.zeros((2, 3, 3), dtype=np.int16)).dtype
    torch.float32
    """

    def __call__(self, image) -> torch.Tensor:
        """Transform ``image`` ``(..., H, W)``; returns a tensor of the same shape."""
        if isinstance(image, torch.Tensor):
            tensor = image
        else:
            array = np.asarray(image)
            if array.dtype == object or not (
                np.issubdtype(array.dtype, np.number) or array.dtype == bool
            ):
                raise ValueError(f"image must be numeric, got dtype {array.dtype}")
            tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        if tensor.is_complex():
            raise ValueError("image must be real-valued, got a complex tensor")
        tensor = _check_image(_plain_tensor(tensor)).to(torch.float32).contiguous()
        bad = ~torch.isfinite(tensor)
        if bool(bad.any()):
            raise ValueError(
                f"image of shape {tuple(tensor.shape)} holds {int(bad.sum())} non-finite "
                "value(s) (NaN or infinite)"
            )
        return tensor


class MaskVertebralBody(Transform):
    """Set the pixels of L1-L5 patches outside the vertebral body to ``value``.

    A patch maps the body's four corners onto its frame, the unit square inside a ``margin``
    on every side (:mod:`fracrisk.imaging.patches`); masking keeps the frame and blanks the
    margin (endplates, discs, neighbours). Kong et al. (2022) compared masked and non-masked
    patches (non-masked worked best).

    Parameters
    ----------
    margin : float, default 0.15
        The patches' margin (as they were cut).
    value : float, default 0.0
        What the blanked pixels become (0: the mean of a z-scored radiograph).

    Examples
    --------
    >>> MaskVertebralBody()(torch.ones(5, 13, 13))[0, 0, 0].item()
    0.0
    """

    def __init__(self, margin: float = 0.15, value: float = 0.0) -> None:
        self.margin = _check_number("margin", margin, low=0.0)
        self.value = float(value)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Transform ``image`` ``(..., H, W)``; returns a tensor of the same shape."""
        image = _check_image(image)
        h, w = image.shape[-2:]
        span = 1.0 + 2.0 * self.margin
        t = -self.margin + span * (torch.arange(h, dtype=torch.float64) + 0.5) / h
        s = -self.margin + span * (torch.arange(w, dtype=torch.float64) + 0.5) / w
        inside = ((t >= 0) & (t <= 1))[:, None] & ((s >= 0) & (s <= 1))[None, :]
        return torch.where(inside.to(image.device), image, torch.full_like(image, self.value))


class ScaleIntensityRange(Transform):
    """Linear intensity map ``a_min -> b_min``, ``a_max -> b_max`` (e.g. a DRR window).

    Uses :class:`monai.transforms.ScaleIntensityRange`.

    Parameters
    ----------
    a_min, a_max : float
        Input intensities (``a_min < a_max``), e.g. line integrals (dimensionless).
    b_min, b_max : float, default 0.0, 1.0
        Where they go.
    clip : bool, default False
        Clip the output to ``[b_min, b_max]``.

    Examples
    --------
    >>> ScaleIntensityRange(0.0, 4.0)(torch.tensor([[0.0, 2.0, 4.0]])).tolist()
    [[0.0, 0.5, 1.0]]
    """

    def __init__(
        self,
        a_min: float,
        a_max: float,
        b_min: float = 0.0,
        b_max: float = 1.0,
        *,
        clip: bool = False,
    ) -> None:
        named = (("a_min", a_min), ("a_max", a_max), ("b_min", b_min), ("b_max", b_max))
        values = [_check_number(name, value, low=-math.inf) for name, value in named]
        if not values[0] < values[1]:
            raise ValueError(f"a_min must be < a_max, got {a_min!r} and {a_max!r}")
        self.a_min, self.a_max, self.b_min, self.b_max = values
        self.clip = bool(clip)
        from monai.transforms import ScaleIntensityRange as _MonaiScale

        self._monai = _MonaiScale(
            self.a_min, self.a_max, self.b_min, self.b_max, clip=self.clip, dtype=np.float32
        )

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Transform ``image`` ``(..., H, W)``; returns a tensor of the same shape."""
        image = _check_image(image)
        return _plain_tensor(self._monai(image)).to(image.dtype)


class Rotate(Transform):
    """Rotate ``(..., H, W)`` images about their centre by a fixed angle (same size out).

    Uses :class:`monai.transforms.Rotate` (``grid_sample``, ``align_corners=False``).

    Parameters
    ----------
    degrees : float
        Angle in degrees; positive turns the image clockwise as displayed (rows down).
        Exactly 0 returns the input unchanged (no resampling).
    padding_mode : {"zeros", "border", "reflection"}, default "zeros"
        What enters at the corners: 0 (air on a line-integral DRR), the nearest edge value,
        or a reflection.
    mode : {"bilinear", "nearest"}, default "bilinear"

    Examples
    --------
    >>> x = torch.arange(9.0).reshape(1, 3, 3)
    >>> Rotate(90.0)(x).round().tolist() == torch.rot90(x, -1, (1, 2)).tolist()
    True
    """

    def __init__(
        self, degrees: float, *, padding_mode: str = "zeros", mode: str = "bilinear"
    ) -> None:
        self.degrees = _check_number("degrees", degrees, low=-math.inf)
        self.padding_mode = _check_choice("padding_mode", padding_mode, _PADDING_MODES)
        self.mode = _check_choice("mode", mode, _INTERPOLATIONS)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Transform ``image`` ``(..., H, W)``; returns a tensor of the same shape."""
        return _rotate(_check_image(image), self.degrees, self.padding_mode, self.mode)


def _rotate(image: torch.Tensor, degrees: float, padding_mode: str, mode: str) -> torch.Tensor:
    if degrees == 0.0:
        return image
    from monai.transforms import Rotate as _MonaiRotate

    shape = image.shape
    channels = image.reshape(-1, *shape[-2:])  # (C, H, W): MONAI's channel-first 2-D image
    rotated = _MonaiRotate(
        math.radians(degrees),
        keep_size=True,
        mode=mode,
        padding_mode=padding_mode,
        align_corners=False,
        dtype=torch.float32 if image.dtype != torch.float64 else torch.float64,
    )(channels)
    return _plain_tensor(rotated).to(image.dtype).reshape(shape)


# ------------------------------------------------------------------------------- random


class RandRotate(RandomTransform):
    """Rotate by an angle drawn from U(-max_degrees, max_degrees), about the image centre.

    One angle per call, shared by all channels (the views or vertebrae of one patient).

    Parameters
    ----------
    max_degrees : float, default 5.0
        Largest rotation in degrees (>= 0); positive angles turn clockwise as displayed.
        Small: a few degrees is the positioning variation between acquisitions.
    prob : float, default 1.0
        Probability of rotating.
    padding_mode : {"zeros", "border", "reflection"}, default "zeros"
        See :class:`Rotate`. Zeros suit line-integral DRRs (air); ``"border"`` suits
        z-scored radiograph patches, whose background is not 0.
    mode : {"bilinear", "nearest"}, default "bilinear"
    seed : int, optional
        Seed of the transform's own generator.

    Examples
    --------
    >>> x = torch.rand(3, 8, 8)
    >>> bool(torch.equal(RandRotate(max_degrees=0.0)(x), x))
    True
    """

    def __init__(
        self,
        max_degrees: float = 5.0,
        prob: float = 1.0,
        *,
        padding_mode: str = "zeros",
        mode: str = "bilinear",
        seed: int | None = None,
    ) -> None:
        super().__init__(prob, seed=seed)
        self.max_degrees = _check_number("max_degrees", max_degrees, low=0.0, high=180.0)
        self.padding_mode = _check_choice("padding_mode", padding_mode, _PADDING_MODES)
        self.mode = _check_choice("mode", mode, _INTERPOLATIONS)

    def draw(self, generator: torch.Generator | None = None) -> float | None:
        """The angle (degrees) the next call would use, or None when it would not rotate."""
        g = self._rng(generator)
        if not self._applies(g):
            return None
        return self._uniform(-self.max_degrees, self.max_degrees, g)

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None):
        """Transform ``image`` ``(..., H, W)``, drawing from ``generator`` (see the module)."""
        image = _check_image(image)
        angle = self.draw(generator)
        if angle is None:
            return image
        return _rotate(image, angle, self.padding_mode, self.mode)


class RandIntensityJitter(RandomTransform):
    r"""Random gamma, gain and offset of the intensities: exposure differences.

    With :math:`m, M` the image's minimum and maximum (over all channels), a draw of
    :math:`\gamma \sim U(1 - g, 1 + g)`, :math:`a \sim U(1 - s, 1 + s)` and
    :math:`b \sim U(-o, o)` gives

    .. math:: y = a \left[ m + (M - m) \left(\frac{x - m}{M - m}\right)^{\gamma} \right] + b,

    the gamma step by :class:`monai.transforms.AdjustContrast` (which keeps :math:`m` and
    :math:`M`). One draw per call, shared by all channels.

    Parameters
    ----------
    scale : float, default 0.05
        Half-width ``s`` of the gain's range, in [0, 1).
    shift : float, default 0.05
        Half-width ``o`` of the offset's range, >= 0, in the image's intensity units (e.g.
        optical depth for a DRR, standard deviations for a z-scored radiograph).
    gamma : float, default 0.1
        Half-width ``g`` of the gamma's range, in [0, 1); 0 skips the gamma step.
    prob : float, default 1.0
    seed : int, optional

    Examples
    --------
    >>> t = RandIntensityJitter(scale=0.1, shift=0.0, gamma=0.0, seed=0)
    >>> y = t(torch.ones(2, 3, 3))
    >>> bool(0.9 <= float(y[0, 0, 0]) <= 1.1) and bool(torch.all(y == y[0, 0, 0]))
    True
    """

    def __init__(
        self,
        scale: float = 0.05,
        shift: float = 0.05,
        gamma: float = 0.1,
        prob: float = 1.0,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__(prob, seed=seed)
        self.scale = _check_number("scale", scale, low=0.0, high=1.0, open_high=True)
        self.shift = _check_number("shift", shift, low=0.0)
        self.gamma = _check_number("gamma", gamma, low=0.0, high=1.0, open_high=True)

    def draw(self, generator: torch.Generator | None = None) -> tuple[float, float, float] | None:
        """``(gamma, gain, offset)`` the next call would use, or None when it would not apply.

        Three uniform draws after the coin, always in this order, also when a half-width is
        0, so that changing one setting does not shift the others' random streams.
        """
        g = self._rng(generator)
        if not self._applies(g):
            return None
        gamma = self._uniform(1.0 - self.gamma, 1.0 + self.gamma, g)
        gain = self._uniform(1.0 - self.scale, 1.0 + self.scale, g)
        offset = self._uniform(-self.shift, self.shift, g)
        return gamma, gain, offset

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None):
        """Transform ``image`` ``(..., H, W)``, drawing from ``generator`` (see the module)."""
        image = _check_image(image)
        params = self.draw(generator)
        if params is None:
            return image
        gamma, gain, offset = params
        out = image
        if self.gamma > 0.0 and gamma != 1.0:
            from monai.transforms import AdjustContrast

            out = _plain_tensor(AdjustContrast(gamma)(out)).to(image.dtype)
        return out * gain + offset


class RandGaussianNoise(RandomTransform):
    """Add independent Gaussian noise N(0, std^2) to every pixel.

    Parameters
    ----------
    std : float, default 0.01
        Standard deviation (>= 0), in the image's intensity units.
    prob : float, default 1.0
    seed : int, optional

    Examples
    --------
    >>> y = RandGaussianNoise(std=0.5, seed=0)(torch.zeros(1, 100, 100))
    >>> round(float(y.std()), 1)
    0.5
    """

    def __init__(self, std: float = 0.01, prob: float = 1.0, *, seed: int | None = None) -> None:
        super().__init__(prob, seed=seed)
        self.std = _check_number("std", std, low=0.0)

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None):
        """Transform ``image`` ``(..., H, W)``, drawing from ``generator`` (see the module)."""
        image = _check_image(image)
        g = self._rng(generator)
        if not self._applies(g) or self.std == 0.0:
            return image
        noise = torch.randn(image.shape, generator=g, dtype=torch.float32)
        return image + (noise * self.std).to(image.dtype).to(image.device)


class RandFlip(RandomTransform):
    """Flip rows and/or columns with probability ``prob``; column flips need consent.

    Parameters
    ----------
    spatial_axis : int or sequence of int
        0 flips the rows (superior <-> inferior on frontal and lateral DRRs and on patches;
        posterior <-> anterior on an axial DRR), 1 flips the columns.
    prob : float, default 0.5
    channels : sequence of int, optional
        Flip only these channels (default all). A consistent left-right mirror of a
        patient's (frontal, lateral, axial) DRR stack flips the columns of the frontal and
        axial views and leaves the lateral view as it is: ``spatial_axis=1, channels=(0,
        2)``.
    allow_laterality_change : bool, default False
        Column flips are refused unless True: the columns are the patient's right -> left
        axis on frontal and axial DRRs, so a flip turns a right hip into a left one (the
        side of a hip is a covariate-like fact: after a first hip fracture the other hip
        is the one at risk), and anterior -> posterior on lateral DRRs and vertebral
        patches, where a flip moves an anterior wedge deformity to the back.
    seed : int, optional

    Raises
    ------
    ValueError
        A column flip without ``allow_laterality_change=True``, or an axis other than 0, 1.

    Examples
    --------
    >>> RandFlip(spatial_axis=1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: RandFlip(spatial_axis=1) would flip image columns, which mirrors the patient...
    >>> x = torch.arange(4.0).reshape(1, 2, 2)
    >>> RandFlip(spatial_axis=0, prob=1.0)(x).tolist()
    [[[2.0, 3.0], [0.0, 1.0]]]
    """

    def __init__(
        self,
        spatial_axis: int | Sequence[int],
        prob: float = 0.5,
        *,
        channels: Sequence[int] | None = None,
        allow_laterality_change: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(prob, seed=seed)
        axes = (spatial_axis,) if isinstance(spatial_axis, (int, np.integer)) else spatial_axis
        try:
            axes = tuple(int(a) for a in axes)
        except (TypeError, ValueError):
            axes = ()
        if not axes or any(a not in (0, 1) for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(
                f"spatial_axis must be 0 (rows), 1 (columns) or both, got {spatial_axis!r}"
            )
        self.allow_laterality_change = bool(allow_laterality_change)
        if 1 in axes and not self.allow_laterality_change:
            raise ValueError(
                f"RandFlip(spatial_axis={spatial_axis!r}) would flip image columns, which "
                "mirrors the patient (right <-> left hip on frontal/axial DRRs, anterior <-> "
                "posterior on lateral DRRs and vertebral patches); pass "
                "allow_laterality_change=True if that is really wanted"
            )
        self.spatial_axis = axes
        if channels is not None:
            try:
                channels = tuple(int(c) for c in channels)
            except (TypeError, ValueError) as err:
                raise ValueError(f"channels must be channel indices, got {channels!r}") from err
        self.channels = channels

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None):
        """Transform ``image`` ``(..., H, W)``, drawing from ``generator`` (see the module)."""
        image = _check_image(image)
        if not self._applies(self._rng(generator)):
            return image
        dims = [image.ndim - 2 + a for a in self.spatial_axis]
        if self.channels is None:
            return image.flip(dims)
        if image.ndim != 3:
            raise ValueError(f"channels= needs (C, H, W) images, got shape {tuple(image.shape)}")
        bad = [c for c in self.channels if not -image.shape[0] <= c < image.shape[0]]
        if bad:
            raise ValueError(f"channels {bad} out of range for {image.shape[0]} channels")
        out = image.clone()
        index = torch.tensor(self.channels, dtype=torch.long)
        out[index] = image[index].flip(dims)
        return out


# ----------------------------------------------------------------------------- recipes


def default_eval_transform(kind: str) -> Compose:
    """Evaluation transform: float32, contiguous, checked finite; nothing random.

    The deterministic normalisation (DRR window, radiograph z-score) is part of the cached
    preprocessing of :class:`fracrisk.data.ImageCohortDataset`, so nothing else is needed.

    Parameters
    ----------
    kind : {"drr", "patches", "volume"}

    Examples
    --------
    >>> default_eval_transform("drr")
    Compose([
        EnsureFloat32()
    ])
    """
    _check_kind(kind)
    return Compose([EnsureFloat32()])


def default_train_transform(
    kind: str,
    *,
    max_degrees: float = 5.0,
    noise_std: float | None = None,
    seed: int | None = None,
) -> Compose:
    """The survival-safe training augmentation (module docstring): no flips.

    ========  =================================  ===========================================
    kind      rotation                           intensity
    ========  =================================  ===========================================
    drr       U(-5, 5) degrees, zero padding     gamma 1 +- 0.05, gain 1 +- 0.03, offset +-
              (air)                              0.02 (optical depth); no noise
    patches   U(-5, 5) degrees, border padding   gamma 1 +- 0.1, gain 1 +- 0.1, offset +- 0.1
                                                 (z-score units); noise std 0.05 on half of
                                                 the images
    volume    U(-5, 5) degrees about the         as drr (HU / 1000 or the HU window's units);
              body's long axis, zero padding     no noise
    ========  =================================  ===========================================

    Parameters
    ----------
    kind : {"drr", "patches", "volume"}
    max_degrees : float, default 5.0
        Largest rotation in degrees.
    noise_std : float, optional
        Gaussian noise standard deviation; default 0 for DRRs, 0.05 for patches.
    seed : int, optional
        Seeds the members' own generators (a generator passed to the call, as the dataset
        does, takes precedence).

    Returns
    -------
    Compose
        ``EnsureFloat32``, ``RandRotate``, ``RandIntensityJitter`` and, with noise,
        ``RandGaussianNoise``.
    """
    kind = _check_kind(kind)
    if kind in ("drr", "volume"):  # a volume (1, D, H, W) turns in its axial planes
        noise = 0.0 if noise_std is None else noise_std
        members = [
            EnsureFloat32(),
            RandRotate(max_degrees, padding_mode="zeros"),
            RandIntensityJitter(scale=0.03, shift=0.02, gamma=0.05),
        ]
        noise_prob = 1.0
    else:
        noise = 0.05 if noise_std is None else noise_std
        members = [
            EnsureFloat32(),
            RandRotate(max_degrees, padding_mode="border"),
            RandIntensityJitter(scale=0.1, shift=0.1, gamma=0.1),
        ]
        noise_prob = 0.5
    noise = _check_number("noise_std", noise, low=0.0)
    if noise > 0.0:
        members.append(RandGaussianNoise(noise, prob=noise_prob))
    return Compose(members).set_random_state(_check_seed(seed))
